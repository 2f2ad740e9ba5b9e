/**
 * The slot and state guardian. The slot on the source and the state on the
 * target must describe the same replication; when they do not, streaming
 * would skip changes without a trace (the server resumes from the slot's
 * confirmed_flush_lsn, whatever the target holds). So before the first copy
 * and before every streaming attempt it checks, and refuses with the
 * recovery when:
 *
 * - source and target are one database (the copy would empty the source);
 * - the source is another cluster (system identifier) or has moved to another
 *   timeline (promotion or point-in-time recovery: the WAL after the fork may
 *   not contain what was applied from the old timeline, and pgtide cannot tell);
 * - the slot is missing, invalidated (wal_status 'lost', or `conflicting` on
 *   PostgreSQL 16+), or belongs to something else;
 * - the slot's confirmed_flush_lsn is past everything the target holds: the
 *   applied position, the last position acknowledged (persisted before it was
 *   sent, see replication-session.ts) and the slot's start. That is a target
 *   restored from a backup, or a slot reused by another subscription.
 *
 * A slot is only ever dropped when this subscription's state recorded that it
 * was creating it (`slot_state`, committed before CREATE_REPLICATION_SLOT).
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { fromServerError, PgtideError } from '../core/errors.js';
import { formatLsn, maxLsn, ZERO_LSN, type Lsn } from '../core/lsn.js';
import type { StateStore, SubscriptionRow } from '../state/state-store.js';
import { dropSlot, readSlot, type SlotRow } from '../source/slots.js';
import type { CreatedSlot, ReplicationConnection } from '../source/replication-connection.js';

export { readSlot, type SlotRow } from '../source/slots.js';

/**
 * What the guardian reads and writes of the subscription's state: the
 * `pgtide` schema of a PostgreSQL target (StateStore), or the state file of an
 * NDJSON target (sinks/ndjson/state-file.ts).
 */
export type GuardState = Pick<StateStore, 'getSubscription' | 'setSourceTimeline' | 'markSlotCreating'>;

export interface ServerIdentity {
  /** null when the role may not read pg_control_system(). */
  readonly systemId: string | null;
  readonly startedAt: string;
  readonly database: string;
  readonly databaseOid: number;
}

export async function serverIdentity(sql: postgres.Sql, what: 'source' | 'target'): Promise<ServerIdentity> {
  try {
    const [row] = await sql.unsafe<{ started: string; database: string; oid: number }[]>(
      `SELECT pg_postmaster_start_time()::text AS started, current_database() AS database,
              (SELECT oid::int FROM pg_database WHERE datname = current_database()) AS oid`);
    if (!row) throw new PgtideError('INTERNAL', `the ${what} returned no identity`);
    const systemId = await sql.unsafe<{ id: string }[]>(`SELECT system_identifier::text AS id FROM pg_control_system()`).then((r) => r[0]?.id ?? null, () => null);
    return { systemId, startedAt: row.started, database: row.database, databaseOid: Number(row.oid) };
  } catch (error) {
    throw fromServerError(error, what);
  }
}

/**
 * One database cannot be both ends: the copy empties the target's tables in a
 * transaction that then waits on its own lock on the source side. Clones share
 * a system identifier, so the postmaster's start time tells two servers apart.
 */
export function refuseSourceIsTarget(source: ServerIdentity, target: ServerIdentity): void {
  const sameCluster = source.startedAt === target.startedAt && (source.systemId === null || target.systemId === null || source.systemId === target.systemId);
  if (sameCluster && source.database === target.database) {
    throw new PgtideError('SOURCE_IS_TARGET', `source and target are the same database ("${source.database}" on one server). pgtide would empty the source's tables to copy them into themselves. Point target.url at another database or server.`);
  }
}

export interface GuardContext {
  readonly source: postgres.Sql;
  /** The target database, to name other subscriptions by their origins; none for a file target. */
  readonly target: postgres.Sql | undefined;
  readonly store: GuardState;
  readonly subscription: string;
  readonly slot: string;
  readonly sourceDatabase: string;
  /** IDENTIFY_SYSTEM of the source, from a replication connection. */
  readonly identity: { readonly systemId: string; readonly timeline: number };
  readonly logger: Logger;
}

const RESYNC = 'run `pgtide resync --config <file>` to drop this subscription\'s slot and copy every table again at the next start';

/** Another source cluster than the state recorded: checked before the state is touched at all. */
export function refuseOtherSource(state: SubscriptionRow | undefined, systemId: string): void {
  if (state?.sourceSystemId && state.sourceSystemId !== systemId) {
    throw new PgtideError('SOURCE_CHANGED', `this target replicates subscription "${state.name}" from another source cluster (system identifier ${state.sourceSystemId}; this source is ${systemId}). If the source was replaced on purpose, ${RESYNC}; otherwise fix source.url, or use another \`name:\` for a second subscription.`);
  }
}

/** Refuses another cluster or another timeline than the one the state recorded; records the timeline the first time. */
async function checkSourceHistory(ctx: GuardContext, state: SubscriptionRow): Promise<void> {
  refuseOtherSource(state, ctx.identity.systemId);
  if (state.sourceTimeline === null) {
    await ctx.store.setSourceTimeline(ctx.identity.timeline);
  } else if (state.sourceTimeline !== ctx.identity.timeline) {
    throw new PgtideError('SOURCE_CHANGED', `the source moved from timeline ${state.sourceTimeline} to ${ctx.identity.timeline} (it was promoted or restored to a point in time) since subscription "${ctx.subscription}" recorded it. Changes applied from the old timeline may not exist on the new one, so pgtide stops rather than guess. Check the source's history; to start over from its current contents, ${RESYNC}.`);
  }
}

/** Names other subscriptions of the same name on this target cluster, from their replication origins. */
async function otherOwners(ctx: GuardContext, slotRow: SlotRow | undefined): Promise<string> {
  const owners: string[] = [];
  const rows = !ctx.target ? [] : await ctx.target.unsafe<{ datname: string | null; roname: string }[]>(
    `SELECT d.datname, o.roname FROM pg_replication_origin o
       LEFT JOIN pg_database d ON o.roname = 'pgtide_' || $1 || '_' || d.oid::text
      WHERE (o.roname LIKE 'pgtide\\_' || $1 || '\\_%' OR o.roname = 'pgtide_' || $1)
        AND d.datname IS DISTINCT FROM current_database()`, [ctx.subscription]).catch(() => []);
  for (const r of rows) owners.push(r.datname ? `subscription "${ctx.subscription}" of target database "${r.datname}" on this target server` : `replication origin ${r.roname} on this target server`);
  if (slotRow?.active && slotRow.activePid !== null) {
    const [who] = await ctx.source.unsafe<{ app: string | null; addr: string | null }[]>(`SELECT application_name AS app, host(client_addr) AS addr FROM pg_stat_activity WHERE pid = $1`, [slotRow.activePid]).catch(() => []);
    owners.push(`the process streaming it now (source pid ${slotRow.activePid}${who?.app ? `, application ${who.app}` : ''}${who?.addr ? ` from ${who.addr}` : ''})`);
  }
  return owners.length ? `It belongs to ${owners.join('; ')}.` : '';
}

/**
 * First start (no start point recorded): a slot of that name may exist only if
 * this subscription's state was creating it when a previous start died. Then
 * it is ours and unused, and is dropped; anything else is refused.
 */
export async function claimSlotForCreation(ctx: GuardContext): Promise<void> {
  const state = await ctx.store.getSubscription();
  if (!state) throw new PgtideError('INTERNAL', `subscription "${ctx.subscription}" has no state row`);
  await checkSourceHistory(ctx, state);
  const slotRow = await readSlot(ctx.source, ctx.slot);
  if (slotRow) {
    if (state.slotState !== 'creating' || state.slotName !== ctx.slot) {
      throw new PgtideError('SLOT_NOT_OURS', `replication slot "${ctx.slot}" already exists on the source, but subscription "${ctx.subscription}" in this target database did not create it. ${(await otherOwners(ctx, slotRow)) || 'It belongs to another pgtide subscription (same slot name, another target database or server) or to another tool.'} pgtide never drops a slot it did not create: set another \`slot:\` (and \`name:\`) for this config, or, if that slot is no longer needed, drop it on the source (SELECT pg_drop_replication_slot('${ctx.slot}')) and start again.`);
    }
    if (slotRow.active) throw new PgtideError('SLOT_IN_USE', `replication slot "${ctx.slot}" is active on the source; another process uses it. Stop it, then start again.`);
    // Left by a first start of this subscription that died before recording its start point.
    await dropSlot(ctx.source, ctx.slot);
    ctx.logger.info({ slot: ctx.slot }, 'dropped the slot left by an unfinished first start of this subscription');
  }
  await ctx.store.markSlotCreating();
}

/**
 * First start: claims the slot name (see claimSlotForCreation), creates the
 * slot on `repl` and records its start point and the timeline. The caller
 * keeps `repl` open while it uses the exported snapshot.
 */
export async function createOwnSlot(ctx: GuardContext, repl: ReplicationConnection, store: Pick<StateStore, 'markSlotCreated'>, sourceSystemId: string, exportSnapshot: boolean): Promise<CreatedSlot> {
  if (ctx.identity.systemId !== sourceSystemId) {
    throw new PgtideError('STATE_CORRUPT', `the replication connection reached a different server (system id ${ctx.identity.systemId}) than the SQL connection (${sourceSystemId}); check that source.url points at one server, not a pooler or load balancer.`);
  }
  // Drops only a slot this subscription's state was creating; marks the creation before it happens.
  await claimSlotForCreation(ctx);
  const created = await repl.createSlot(ctx.slot, { temporary: false, exportSnapshot });
  await store.markSlotCreated(created.consistentPoint, ctx.identity.timeline);
  ctx.logger.info({ slot: ctx.slot, consistentPoint: formatLsn(created.consistentPoint) }, 'created replication slot');
  return created;
}

/** Before streaming from an existing slot: refuses when the slot cannot deliver what the target lacks. */
export async function guardSlot(ctx: GuardContext, applied: Lsn): Promise<void> {
  const state = await ctx.store.getSubscription();
  if (!state) throw new PgtideError('STATE_CORRUPT', `subscription "${ctx.subscription}" has no state on the target any more (was \`pgtide drop\` run?). Start pgtide again to set it up from scratch.`);
  await checkSourceHistory(ctx, state);
  const slotRow = await readSlot(ctx.source, ctx.slot);
  if (!slotRow) {
    throw new PgtideError('SLOT_MISSING', `replication slot "${ctx.slot}" is gone from the source, so the changes since the last run cannot be streamed. To copy every table again, ${RESYNC}.`);
  }
  if (slotRow.plugin !== 'pgoutput' || slotRow.database !== ctx.sourceDatabase) {
    throw new PgtideError('SLOT_NOT_OURS', `replication slot "${ctx.slot}" on the source is ${slotRow.plugin ? `a ${slotRow.plugin} slot` : 'a physical slot'}${slotRow.database ? ` of database "${slotRow.database}"` : ''}, not this subscription's pgoutput slot of "${ctx.sourceDatabase}". Set another \`slot:\` in the config.`);
  }
  if (slotRow.walStatus === 'lost' || slotRow.conflicting) {
    throw new PgtideError('SLOT_INVALIDATED', `replication slot "${ctx.slot}" was invalidated on the source (${slotRow.conflicting ? 'conflict with recovery' : 'wal_status = lost: the WAL it needed was removed, see max_slot_wal_keep_size'}); the changes since the last run are gone. ${RESYNC[0]!.toUpperCase()}${RESYNC.slice(1)}.`);
  }
  const held = maxLsn(maxLsn(applied, state.ackedLsn ?? ZERO_LSN), state.startLsn ?? ZERO_LSN);
  if (slotRow.confirmedFlush !== undefined && slotRow.confirmedFlush > held) {
    const owners = await otherOwners(ctx, slotRow);
    throw new PgtideError('SLOT_AHEAD_OF_TARGET', `replication slot "${ctx.slot}" was confirmed up to ${formatLsn(slotRow.confirmedFlush)}, but the target holds subscription "${ctx.subscription}" only up to ${formatLsn(held)}. The source will never send the changes in between again: the target was restored from an older backup, or another subscription used this slot. ${owners ? `${owners} ` : ''}Streaming now would lose them silently, so pgtide stops. To copy every table again, ${RESYNC}.`);
  }
}
