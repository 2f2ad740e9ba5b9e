/**
 * Preparing a subscription whose target is an NDJSON file: the source side
 * as for any target (checks, publication, slot), the state in the sink's
 * state file instead of a `pgtide` schema, and no initial copy: the file
 * receives the transactions committed after the slot's consistent point.
 * Every published table is therefore `ready` from the start with no sync
 * LSN, so the gate passes all of its changes.
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { fromServerError, PgtideError } from '../core/errors.js';
import { formatLsn, ZERO_LSN, type Lsn } from '../core/lsn.js';
import { tableKey, type TableGateState } from '../core/table-sync.js';
import { checkSource } from '../source/source-catalog.js';
import { ReplicationConnection, protocolVersionFor } from '../source/replication-connection.js';
import { Heartbeat } from '../source/heartbeat.js';
import { NdjsonStateFile } from '../sinks/ndjson/state-file.js';
import { publicationName, publicationNames, slotName, type PgtideConfig } from './config.js';
import { claimSlotForCreation, guardSlot, refuseOtherSource, type GuardContext } from './slot-guardian.js';
import { ensurePublications } from './publications.js';
import { ndjsonStatePath } from './target-config.js';
import type { Prepared } from './prepared.js';

export async function prepareNdjson(config: PgtideConfig, target: { readonly path: string; readonly statePath?: string | undefined }, source: postgres.Sql, logger: Logger): Promise<Prepared> {
  const info = await checkSource(source);
  const slot = slotName(config);
  const [sourceDb] = await source.unsafe<{ name: string }[]>(`SELECT current_database() AS name`).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  const tables = await ensurePublications(source, config, logger);
  const state = await NdjsonStateFile.load(ndjsonStatePath(target), config.name);
  let subscription = await state.getSubscription();
  refuseOtherSource(subscription, info.systemId);
  if (!subscription) await state.createSubscription(slot, publicationName(config), info.systemId);
  subscription = await state.getSubscription();
  const guard = (identity: GuardContext['identity']): GuardContext => ({
    source, target: undefined, store: state, subscription: config.name, slot, sourceDatabase: sourceDb?.name ?? '', identity, logger,
  });

  let startLsn: Lsn;
  const repl = ReplicationConnection.open(config.source.url);
  try {
    const identity = await repl.identifySystem();
    if (!subscription?.startLsn) {
      if (identity.systemId !== info.systemId) {
        throw new PgtideError('STATE_CORRUPT', `the replication connection reached a different server (system id ${identity.systemId}) than the SQL connection (${info.systemId}); check that source.url points at one server, not a pooler or load balancer.`);
      }
      await claimSlotForCreation(guard(identity));
      const created = await repl.createSlot(slot, { temporary: false, exportSnapshot: false });
      startLsn = created.consistentPoint;
      await state.markSlotCreated(startLsn, identity.timeline);
      logger.info({ slot, consistentPoint: formatLsn(startLsn), file: target.path }, 'created replication slot; the NDJSON file receives the transactions committed from here on (no initial copy)');
    } else {
      await guardSlot(guard(identity), state.position?.endLsn ?? ZERO_LSN);
      startLsn = subscription.startLsn;
    }
  } finally {
    await repl.close();
  }
  const gate = new Map<string, TableGateState>(tables.map((t) => [tableKey(t.schema, t.name), { state: 'ready', syncLsn: ZERO_LSN }]));
  return {
    state: { gateMap: async () => gate, recordAck: (lsn) => state.recordAck(lsn) },
    startLsn,
    protocolVersion: protocolVersionFor(info.versionNum),
    publications: publicationNames(config),
    slot,
    tables,
    guard,
    heartbeat: new Heartbeat(source, config.heartbeatIntervalMs ?? config.statusIntervalMs, logger),
    sink: { kind: 'ndjson', path: target.path, state },
  };
}
