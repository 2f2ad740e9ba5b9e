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
import { fromServerError } from '../core/errors.js';
import { formatLsn, ZERO_LSN, type Lsn } from '../core/lsn.js';
import { tableKey, type TableGateState } from '../core/table-sync.js';
import { checkSource } from '../source/source-catalog.js';
import { ReplicationConnection, protocolVersionFor } from '../source/replication-connection.js';
import { Heartbeat } from '../source/heartbeat.js';
import { NdjsonStateFile } from '../sinks/ndjson/state-file.js';
import { publicationName, publicationNames, slotName, type PgtideConfig } from './config.js';
import { createOwnSlot, guardSlot, refuseOtherSource, type GuardContext } from './slot-guardian.js';
import { ensurePublications } from './publications.js';
import { checkPrivileges } from './privileges.js';
import { ndjsonStatePath } from './target-config.js';
import type { Prepared } from './prepared.js';

export async function prepareNdjson(config: PgtideConfig, target: { readonly path: string; readonly statePath?: string | undefined }, source: postgres.Sql, logger: Logger): Promise<Prepared> {
  await checkPrivileges(source, undefined, config);
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
      startLsn = (await createOwnSlot(guard(identity), repl, state, info.systemId, false)).consistentPoint;
      logger.info({ file: target.path, from: formatLsn(startLsn) }, 'no initial copy for an NDJSON target: it receives the transactions committed from the slot\'s start on');
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
