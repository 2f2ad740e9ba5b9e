/**
 * `pgtide resync`: the explicit way out when the slot guardian refuses (slot
 * ahead of the target, missing, invalidated, source replaced). It drops this
 * subscription's slot — only when this subscription's state created it — and
 * puts every table back to `init` and the applied position to nothing. The
 * copy itself runs at the next `pgtide start`, which creates a new slot and
 * empties and copies each table, as on a first start: nothing is copied while
 * the operator may still be looking at the target.
 */
import type postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import { slotName, type PgtideConfig } from './config.js';
import { fromServerError, PgtideError } from '../core/errors.js';
import { StateStore } from '../state/state-store.js';
import { checkSource } from '../source/source-catalog.js';
import { leaderIsFree } from './leader-lock.js';
import { dropSlot, readSlot } from '../source/slots.js';
import { postgresTargetUrl } from './target-config.js';

export interface ResyncReport { readonly droppedSlot: boolean; readonly tables: number }

/** True when this subscription's state on the target records creating `slot`. */
export async function slotIsOurs(target: postgres.Sql, subscription: string, slot: string): Promise<boolean> {
  const [hasState] = await target.unsafe<{ ok: boolean }[]>(`SELECT to_regclass('pgtide.subscription') IS NOT NULL AS ok`);
  if (!hasState?.ok) return false;
  const [column] = await target.unsafe<{ ok: boolean }[]>(`SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'pgtide' AND table_name = 'subscription' AND column_name = 'slot_state') AS ok`);
  // State from before slot_state existed: a recorded start point means the slot was created.
  const ours = column?.ok ? `slot_state IS NOT NULL` : `start_lsn IS NOT NULL`;
  const rows = await target.unsafe(`SELECT 1 FROM pgtide.subscription WHERE name = $1 AND slot_name = $2 AND ${ours}`, [subscription, slot]);
  return rows.length > 0;
}

export async function resyncSubscription(config: PgtideConfig): Promise<ResyncReport> {
  const source = openPostgres(config.source.url, 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  const target = openPostgres(postgresTargetUrl(config, 'pgtide resync'), 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    const slot = slotName(config);
    const store = new StateStore(target, config.name);
    await store.migrate();
    if (!(await store.getSubscription())) {
      throw new PgtideError('STATE_CORRUPT', `subscription "${config.name}" has no state on this target, so there is nothing to resync. Start it with \`pgtide start --config <file>\`.`);
    }
    if (!(await leaderIsFree(target, config.name).catch((e: unknown) => { throw fromServerError(e, 'target'); }))) {
      throw new PgtideError('SLOT_IN_USE', `a pgtide process is running subscription "${config.name}" on this target; stop it (SIGTERM) before resync.`);
    }
    const info = await checkSource(source);
    const slotRow = await readSlot(source, slot);
    let droppedSlot = false;
    if (slotRow) {
      if (!(await slotIsOurs(target, config.name, slot))) {
        throw new PgtideError('SLOT_NOT_OURS', `replication slot "${slot}" exists on the source, but subscription "${config.name}" in this target database did not create it, so resync leaves it alone. Set another \`slot:\` for this config, or drop that slot by hand if nothing uses it (SELECT pg_drop_replication_slot('${slot}')).`);
      }
      if (slotRow.active) throw new PgtideError('SLOT_IN_USE', `replication slot "${slot}" is in use on the source; stop the process streaming from it before resync.`);
      await dropSlot(source, slot);
      droppedSlot = true;
    }
    await store.resetForResync(info.systemId).catch((e: unknown) => { throw fromServerError(e, 'target'); });
    const tables = (await store.tableStates()).length;
    return { droppedSlot, tables };
  } finally {
    await Promise.allSettled([source.end({ timeout: 1 }), target.end({ timeout: 1 })]);
  }
}
