/**
 * `pgtide drop`: removes what pgtide created for a subscription — the slot
 * (and the publication, when pgtide created it) on the source, the replication
 * origin and state rows on the target. Dropping the slot is what stops the
 * source from retaining WAL for us.
 */
import { openPostgres } from '../pg/connect.js';
import { legacyOriginName, originName, publicationName, slotName, type PgtideConfig } from './config.js';
import { fromServerError, PgtideError } from '../core/errors.js';
import { quoteIdent } from '../core/sql.js';
import { slotIsOurs } from './resync.js';

export interface DropReport { readonly droppedSlot: boolean; readonly slotNotOurs: boolean; readonly droppedPublication: boolean; readonly droppedOrigin: boolean; readonly droppedState: boolean }

export async function dropSubscription(config: PgtideConfig): Promise<DropReport> {
  const source = openPostgres(config.source.url, 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  const target = openPostgres(config.target.url, 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    const slot = slotName(config);
    const [slotRow] = await source.unsafe<{ active: boolean }[]>(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch((e: unknown) => { throw fromServerError(e, 'source'); });
    if (slotRow?.active) {
      throw new PgtideError('SLOT_IN_USE', `replication slot "${slot}" is in use; stop the running pgtide (SIGTERM) before dropping.`);
    }
    let droppedSlot = false;
    // Never a slot this subscription's state did not create (another config may stream from it).
    const slotNotOurs = slotRow !== undefined && !(await slotIsOurs(target, config.name, slot));
    if (slotRow && !slotNotOurs) {
      await source.unsafe(`SELECT pg_drop_replication_slot($1)`, [slot]);
      droppedSlot = true;
    }
    let droppedPublication = false;
    // Only a publication pgtide created itself (no `publication:` in the config) is ours to drop.
    if (!config.publication) {
      const result = await source.unsafe(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [publicationName(config)]);
      if (result.length) {
        await source.unsafe(`DROP PUBLICATION ${quoteIdent(publicationName(config))}`);
        droppedPublication = true;
      }
    }
    const [oid] = await target.unsafe<{ oid: number }[]>(`SELECT oid::int AS oid FROM pg_database WHERE datname = current_database()`).catch((e: unknown) => { throw fromServerError(e, 'target'); });
    let droppedOrigin = false;
    // The legacy name too: the progress of record is apply_progress, so dropping an origin another
    // database's older pgtide still uses only makes it create the origin again at its next start.
    for (const origin of [originName(config, oid!.oid), legacyOriginName(config)]) {
      const [found] = await target.unsafe(`SELECT 1 FROM pg_replication_origin WHERE roname = $1`, [origin]);
      if (!found) continue;
      const dropped = await target.unsafe(`SELECT pg_replication_origin_drop($1)`, [origin]).then(() => true, () => false);
      droppedOrigin ||= dropped;
    }
    let droppedState = false;
    const [hasState] = await target.unsafe(`SELECT to_regclass('pgtide.subscription') IS NOT NULL AS ok`);
    if (hasState?.ok) {
      const deleted = await target.unsafe(`DELETE FROM pgtide.subscription WHERE name = $1`, [config.name]);
      await target.unsafe(`DELETE FROM pgtide.sequence_state WHERE subscription = $1`, [config.name]).catch(() => {});
      await target.unsafe(`DELETE FROM pgtide.last_error WHERE subscription = $1`, [config.name]).catch(() => {});
      await target.unsafe(`DELETE FROM pgtide.conflict_log WHERE subscription = $1`, [config.name]).catch(() => {});
      droppedState = deleted.count > 0;
    }
    return { droppedSlot, slotNotOurs, droppedPublication, droppedOrigin, droppedState };
  } finally {
    await Promise.allSettled([source.end({ timeout: 1 }), target.end({ timeout: 1 })]);
  }
}
