/**
 * The replication slot and the publication on the source, as the guardian,
 * `pgtide drop` and `pgtide resync` see them: one reading of a slot's row, one
 * way to drop a slot or a publication, so each fact has one message.
 */
import type postgres from 'postgres';
import { fromServerError } from '../core/errors.js';
import { parseLsn, type Lsn } from '../core/lsn.js';
import { quoteIdent } from '../core/sql.js';
import { publicationExists } from './source-catalog.js';

export interface SlotRow {
  readonly plugin: string | null;
  readonly database: string | null;
  readonly active: boolean;
  readonly activePid: number | null;
  readonly confirmedFlush: Lsn | undefined;
  readonly walStatus: string | null;
  readonly conflicting: boolean;
}

export async function readSlot(sql: postgres.Sql, slot: string): Promise<SlotRow | undefined> {
  // `conflicting` (logical slot invalidated by recovery conflicts on a standby) exists from 16 on.
  const [version] = await sql.unsafe<{ v: string }[]>(`SELECT current_setting('server_version_num') AS v`).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  const conflicting = Number(version?.v ?? 0) >= 160000 ? 'coalesce(conflicting, false)' : 'false';
  const [row] = await sql.unsafe<{ plugin: string | null; database: string | null; active: boolean; active_pid: number | null; confirmed: string | null; wal_status: string | null; conflicting: boolean }[]>(
    `SELECT plugin, database::text AS database, active, active_pid, confirmed_flush_lsn::text AS confirmed, wal_status, ${conflicting} AS conflicting
       FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  if (!row) return undefined;
  return { plugin: row.plugin, database: row.database, active: row.active, activePid: row.active_pid, confirmedFlush: row.confirmed ? parseLsn(row.confirmed) : undefined, walStatus: row.wal_status, conflicting: row.conflicting };
}

/** Drops a slot; callers decide first that it is this subscription's (see the guardian). */
export async function dropSlot(sql: postgres.Sql, slot: string): Promise<void> {
  await sql.unsafe(`SELECT pg_drop_replication_slot($1)`, [slot]).catch((e: unknown) => { throw fromServerError(e, 'source'); });
}

/** Drops a publication pgtide created; false when there was none. */
export async function dropPublication(sql: postgres.Sql, publication: string): Promise<boolean> {
  if (!(await publicationExists(sql, publication))) return false;
  await sql.unsafe(`DROP PUBLICATION ${quoteIdent(publication)}`).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  return true;
}
