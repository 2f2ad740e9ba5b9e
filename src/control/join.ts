/**
 * Adding a node C to a live pair or mesh (`pgtide join`, docs/topologies.md
 * "Adding a node"), without missing or duplicating a row.
 *
 * C is copied from one existing node A (the "via" edge A → C). The snapshot of
 * that copy holds A's own rows and the rows A had applied from every other
 * node B by then. What A had applied from B is exact and transactional: the
 * edge B → A records its position in A's `pgtide.apply_progress` in the same
 * transaction as the rows, so reading that row under the copy's snapshot
 * gives P, the position in B's WAL up to which B's changes are in the copy.
 * The edge B → C (a "peer" edge) must then apply exactly B's transactions
 * committed after P: its tables are marked ready with sync LSN P, the same
 * per-table rule the engine uses after its own copy (apply/change-gate.ts).
 *
 * A slot can only start at the present, so B → C's slot is created first, at
 * Q, and the copy's snapshot is taken only once A has applied B up to Q:
 * then P ≥ Q and the slot still holds every transaction after P. Changes B
 * received from elsewhere are not in B → C's stream (`origins: none`), and the
 * copy wrote on C without an origin before C's outgoing edges exist.
 *
 * This module prepares the peer edges and records P; cli/join-command.ts runs
 * the via edge's first start around it.
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { openPostgres } from '../pg/connect.js';
import { CLEANUP_MS, settleWithin } from '../pg/bounded.js';
import { PgtideError, fromServerError } from '../core/errors.js';
import { formatLsn, parseLsn, type Lsn } from '../core/lsn.js';
import { qualify } from '../core/sql.js';
import { checkSource, createPublication, publicationExists, publishedTables } from '../source/source-catalog.js';
import { ReplicationConnection } from '../source/replication-connection.js';
import { StateStore } from '../state/state-store.js';
import { claimSlotForCreation } from './slot-guardian.js';
import { publicationName, publicationNames, slotName, type PgtideConfig } from './config.js';
import { postgresTargetUrl } from './target-config.js';

/** A peer edge B → C whose slot exists and whose tables wait for their sync LSN. */
export interface PreparedPeer {
  readonly config: PgtideConfig;
  /** The slot's consistent point Q on B. */
  readonly slotPoint: Lsn;
  /** The edge B → A: its name in A's pgtide schema, where its applied position is. */
  readonly viaSubscription: string;
}

const SITE = { max: 1, connect_timeout: 15, onnotice: () => {} } as const;

async function withClient<T>(url: string, role: 'catalog' | 'admin', work: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = openPostgres(url, role, SITE);
  try {
    return await work(sql);
  } finally {
    await settleWithin(sql.end({ timeout: 2 }), CLEANUP_MS);
  }
}

/**
 * The edge that replicates the peer's source database into the via edge's
 * source database: a subscription in A's pgtide schema whose recorded source
 * cluster is B's and whose slot exists in B's database.
 */
async function edgeInto(via: postgres.Sql, peerSource: postgres.Sql, peerSystemId: string, peer: PgtideConfig): Promise<string> {
  const candidates = await via.unsafe<{ name: string; slot_name: string }[]>(
    `SELECT name, slot_name FROM pgtide.subscription WHERE source_system_id = $1 AND start_lsn IS NOT NULL`, [peerSystemId])
    .catch((error: unknown) => {
      if ((error as { code?: string }).code === '42P01') return [];
      throw fromServerError(error, 'source');
    });
  const found: string[] = [];
  for (const c of candidates) {
    const rows = await peerSource.unsafe(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, [c.slot_name]);
    if (rows.length > 0) found.push(c.name);
  }
  if (found.length !== 1) {
    throw new PgtideError('CONFIG_INVALID', found.length === 0
      ? `no pgtide edge replicates the source of "${peer.name}" into the source of the copying edge, so its rows would reach the new node neither by the copy nor by "${peer.name}" without a gap. Set up and start that edge first (docs/topologies.md, "Adding a node").`
      : `several pgtide edges (${found.join(', ')}) replicate the source of "${peer.name}" into the source of the copying edge; pgtide join cannot tell which one's position the copy holds.`);
  }
  return found[0]!;
}

/**
 * Sets up a peer edge B → C without streaming: its state on C, its
 * publication on B if pgtide manages it, and its slot on B (point Q). Its
 * tables stay `init` until recordPeerPositions marks them ready.
 */
export async function preparePeer(peer: PgtideConfig, via: PgtideConfig, logger: Logger): Promise<PreparedPeer> {
  const source = openPostgres(peer.source.url, 'catalog', SITE);
  const target = openPostgres(postgresTargetUrl(peer, 'pgtide join'), 'admin', SITE);
  const viaSource = openPostgres(via.source.url, 'catalog', SITE);
  try {
    const info = await checkSource(source);
    const store = new StateStore(target, peer.name);
    await store.migrate();
    if (await store.getSubscription()) {
      throw new PgtideError('CONFIG_INVALID', `subscription "${peer.name}" already has state on its target: pgtide join sets up new edges only. If it is a leftover of a failed join, remove it with \`pgtide drop --config <its file>\` and run the join again.`);
    }
    const viaSubscription = await edgeInto(viaSource, source, info.systemId, peer);
    const publications = publicationNames(peer);
    const absent: string[] = [];
    for (const name of publications) if (!(await publicationExists(source, name))) absent.push(name);
    if (absent.length > 0) {
      if (peer.publication) throw new PgtideError('PUBLICATION_MISSING', `publication(s) ${absent.join(', ')} of "${peer.name}" do not exist on its source. Create them, or remove \`publication:\` to let pgtide create one for \`tables:\`.`);
      if (!peer.tables) throw new PgtideError('CONFIG_INVALID', `"${peer.name}" lists no \`tables:\`; pgtide join needs them (or a \`publication:\`) for a peer edge.`);
      await createPublication(source, publicationName(peer), peer.tables);
    }
    const tables = await publishedTables(source, publications);
    const [sourceDb] = await source.unsafe<{ name: string }[]>(`SELECT current_database() AS name`);
    await store.createSubscription(slotName(peer), publicationName(peer), info.systemId);
    await store.syncTableList(tables);
    const repl = ReplicationConnection.open(peer.source.url);
    let slotPoint: Lsn;
    try {
      const identity = await repl.identifySystem();
      const slot = slotName(peer);
      await claimSlotForCreation({ source, target, store, subscription: peer.name, slot, sourceDatabase: sourceDb?.name ?? '', identity, logger });
      const created = await repl.createSlot(slot, { temporary: false, exportSnapshot: false });
      slotPoint = created.consistentPoint;
      await store.markSlotCreated(slotPoint, identity.timeline);
      logger.info({ subscription: peer.name, slot, consistentPoint: formatLsn(slotPoint), viaSubscription, tables: tables.map((t) => qualify(t.schema, t.name)) }, 'join: created the peer edge\'s slot; its tables wait for the copy\'s position');
    } finally {
      await repl.close();
    }
    return { config: peer, slotPoint, viaSubscription };
  } finally {
    await Promise.allSettled([source, target, viaSource].map((sql) => settleWithin(sql.end({ timeout: 2 }), CLEANUP_MS)));
  }
}

async function appliedOnVia(sql: postgres.Sql, subscription: string): Promise<Lsn | undefined> {
  const [row] = await sql.unsafe<{ lsn: string | null }[]>(`SELECT end_lsn::text AS lsn FROM pgtide.apply_progress WHERE subscription = $1`, [subscription]);
  return row?.lsn ? parseLsn(row.lsn) : undefined;
}

/** Waits until the via node has applied each peer's changes up to the peer slot's point Q. */
export async function waitViaCaughtUp(via: PgtideConfig, peers: readonly PreparedPeer[], timeoutMs: number, signal: AbortSignal): Promise<void> {
  await withClient(via.source.url, 'catalog', async (sql) => {
    const deadline = Date.now() + timeoutMs;
    for (const peer of peers) {
      for (;;) {
        const applied = await appliedOnVia(sql, peer.viaSubscription);
        if (applied !== undefined && applied >= peer.slotPoint) break;
        if (signal.aborted) throw new PgtideError('SHUTDOWN', 'pgtide join was interrupted');
        if (Date.now() > deadline) {
          throw new PgtideError('CONFIG_INVALID', `edge "${peer.viaSubscription}" has applied ${applied === undefined ? 'nothing' : `up to ${formatLsn(applied)}`} on the copying edge's source, not yet ${formatLsn(peer.slotPoint)} where "${peer.config.name}"'s slot starts, within ${timeoutMs / 1000} s. Is it running? Start it, then run pgtide join again after \`pgtide drop\` of "${peer.config.name}".`, { retryable: false });
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  });
}

/**
 * Under the via edge's copy snapshot (exported by its slot on A): reads, for
 * each peer, what A had applied from it, and marks the peer's tables ready
 * with that sync LSN on C.
 */
export async function recordPeerPositions(via: PgtideConfig, snapshotName: string, peers: readonly PreparedPeer[], logger: Logger): Promise<void> {
  const positions = await withClient(via.source.url, 'catalog', async (sql) => sql.begin('isolation level repeatable read', async (tx) => {
    await tx.unsafe(`SET TRANSACTION SNAPSHOT '${snapshotName.replace(/'/g, "''")}'`);
    const out: Lsn[] = [];
    for (const peer of peers) {
      const [row] = await tx.unsafe<{ lsn: string | null }[]>(`SELECT end_lsn::text AS lsn FROM pgtide.apply_progress WHERE subscription = $1`, [peer.viaSubscription]);
      out.push(row?.lsn ? parseLsn(row.lsn) : (0n as Lsn));
    }
    return out;
  })).catch((error: unknown) => { throw error instanceof PgtideError ? error : fromServerError(error, 'source'); });
  for (const [index, peer] of peers.entries()) {
    const position = positions[index]!;
    if (position < peer.slotPoint) {
      throw new PgtideError('STATE_CORRUPT', `the copy's snapshot holds "${peer.viaSubscription}" only up to ${formatLsn(position)}, before ${formatLsn(peer.slotPoint)} where "${peer.config.name}"'s slot starts: the changes in between would be lost. Run \`pgtide drop\` for the new edges and pgtide join again.`);
    }
    await withClient(postgresTargetUrl(peer.config, 'pgtide join'), 'admin', async (sql) => {
      const store = new StateStore(sql, peer.config.name);
      for (const t of await store.tableStates()) await store.setTableState(t.schema, t.name, 'ready', position);
    });
    logger.info({ subscription: peer.config.name, syncLsn: formatLsn(position), via: peer.viaSubscription }, 'join: the peer edge applies what the copy does not hold, from this position on');
  }
}
