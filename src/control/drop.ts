/**
 * `pgtide drop`: removes what pgtide created for a subscription — the slot
 * (and the publication, when pgtide created it) on the source, and the
 * replication origin and state rows on a PostgreSQL target, or the state file
 * of an NDJSON target (its output file is the user's data and stays). Dropping
 * the slot is what stops the source from retaining WAL for us.
 */
import { rm } from 'node:fs/promises';
import { openPostgres } from '../pg/connect.js';
import { legacyOriginName, originName, publicationName, slotName, STREAMED_APPLY_CONNECTIONS, streamedOriginName, type PgtideConfig } from './config.js';
import { fromServerError, PgtideError } from '../core/errors.js';
import { slotIsOurs } from './resync.js';
import { dropPublication, dropSlot, readSlot } from '../source/slots.js';
import { StateStore } from '../state/state-store.js';
import { NdjsonStateFile } from '../sinks/ndjson/state-file.js';
import { ndjsonStatePath } from './target-config.js';

export interface DropReport { readonly droppedSlot: boolean; readonly slotNotOurs: boolean; readonly droppedPublication: boolean; readonly droppedOrigin: boolean; readonly droppedState: boolean }

export async function dropSubscription(config: PgtideConfig): Promise<DropReport> {
  const source = openPostgres(config.source.url, 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  const target = config.target.kind === 'postgres' ? openPostgres(config.target.url, 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} }) : undefined;
  try {
    const slot = slotName(config);
    const slotRow = await readSlot(source, slot);
    if (slotRow?.active) {
      throw new PgtideError('SLOT_IN_USE', `replication slot "${slot}" is in use; stop the running pgtide (SIGTERM) before dropping.`);
    }
    const stateFile = config.target.kind === 'ndjson' ? await NdjsonStateFile.load(ndjsonStatePath(config.target), config.name) : undefined;
    // Never a slot this subscription's state did not create (another config may stream from it).
    const ours = async (): Promise<boolean> => {
      if (target) return slotIsOurs(target, config.name, slot).catch((e: unknown) => { throw fromServerError(e, 'target'); });
      const state = await stateFile!.getSubscription();
      return state !== undefined && state.slotName === slot && state.slotState !== null;
    };
    const slotNotOurs = slotRow !== undefined && !(await ours());
    let droppedSlot = false;
    if (slotRow && !slotNotOurs) {
      await dropSlot(source, slot);
      droppedSlot = true;
    }
    // Only a publication pgtide created itself (no `publication:` in the config) is ours to drop.
    const droppedPublication = !config.publication && await dropPublication(source, publicationName(config));
    let droppedOrigin = false;
    let droppedState = false;
    if (target) {
      const [oid] = await target.unsafe<{ oid: number }[]>(`SELECT oid::int AS oid FROM pg_database WHERE datname = current_database()`).catch((e: unknown) => { throw fromServerError(e, 'target'); });
      // The legacy name too: the progress of record is apply_progress, so dropping an origin another
      // database's older pgtide still uses only makes it create the origin again at its next start.
      const streamed = Array.from({ length: STREAMED_APPLY_CONNECTIONS }, (_, n) => streamedOriginName(config, oid!.oid, n));
      for (const origin of [originName(config, oid!.oid), legacyOriginName(config), ...streamed]) {
        const [found] = await target.unsafe(`SELECT 1 FROM pg_replication_origin WHERE roname = $1`, [origin]);
        if (!found) continue;
        const dropped = await target.unsafe(`SELECT pg_replication_origin_drop($1)`, [origin]).then(() => true, () => false);
        droppedOrigin ||= dropped;
      }
      droppedState = await new StateStore(target, config.name).deleteSubscription().catch((e: unknown) => { throw fromServerError(e, 'target'); });
    } else if (stateFile && (await stateFile.getSubscription())) {
      await rm(stateFile.path, { force: true });
      droppedState = true;
    }
    return { droppedSlot, slotNotOurs, droppedPublication, droppedOrigin, droppedState };
  } finally {
    await Promise.allSettled([source.end({ timeout: 1 }), target?.end({ timeout: 1 })]);
  }
}
