/**
 * The DDL records of the state schema that live outside an apply batch: the
 * DDL a stop is waiting on, and the user's decision to skip it
 * (`pgtide ddl skip`). A stop is recorded on a connection of its own, since
 * the batch that met it rolls back.
 */
import type postgres from 'postgres';
import { fromServerError } from '../core/errors.js';
import { formatLsn, parseLsn, type Lsn } from '../core/lsn.js';

export interface StoppedDdl {
  readonly commitLsn: Lsn;
  readonly ordinal: number;
  readonly table: string | undefined;
  readonly statement: string | undefined;
  readonly reason: string;
}

export async function recordStoppedDdl(sql: postgres.Sql, subscription: string, stop: StoppedDdl): Promise<void> {
  try {
    await sql.unsafe(
      `INSERT INTO pgtide.ddl_unhandled (subscription, commit_lsn, ordinal, status, table_name, statement, reason)
       VALUES ($1, $2::text::pg_lsn, $3::text::int, 'stopped', $4, $5, $6)
       ON CONFLICT (subscription, commit_lsn, ordinal) DO UPDATE
         SET status = 'stopped', table_name = EXCLUDED.table_name, statement = EXCLUDED.statement, reason = EXCLUDED.reason, recorded_at = now()
         WHERE pgtide.ddl_unhandled.status IN ('stopped', 'skip')`,
      [subscription, formatLsn(stop.commitLsn), String(stop.ordinal), stop.table ?? null, stop.statement ?? null, stop.reason]);
  } catch (error) {
    throw fromServerError(error, 'target');
  }
}

/** Keys (`lsn#ordinal`) of the DDL messages the user asked to skip and that are not applied yet. */
export async function ddlSkips(sql: postgres.Sql, subscription: string): Promise<Set<string>> {
  try {
    const present = await sql.unsafe<{ ok: boolean }[]>(`SELECT to_regclass('pgtide.ddl_unhandled') IS NOT NULL AS ok`);
    if (!present[0]?.ok) return new Set();
    const rows = await sql.unsafe<{ lsn: string; ordinal: number }[]>(
      `SELECT commit_lsn::text AS lsn, ordinal FROM pgtide.ddl_unhandled WHERE subscription = $1 AND status = 'skip'`, [subscription]);
    return new Set(rows.map((r) => `${formatLsn(parseLsn(r.lsn))}#${r.ordinal}`));
  } catch (error) {
    throw fromServerError(error, 'target');
  }
}

/** Marks the stopped DDL (if any) to be skipped at the next start; returns what it marked. */
export async function skipStoppedDdl(sql: postgres.Sql, subscription: string): Promise<StoppedDdl[]> {
  try {
    const rows = await sql.unsafe<{ lsn: string; ordinal: number; table_name: string | null; statement: string | null; reason: string }[]>(
      `UPDATE pgtide.ddl_unhandled SET status = 'skip', recorded_at = now()
        WHERE subscription = $1 AND status = 'stopped'
        RETURNING commit_lsn::text AS lsn, ordinal, table_name, statement, reason`, [subscription]);
    return rows.map((r) => ({ commitLsn: parseLsn(r.lsn), ordinal: r.ordinal, table: r.table_name ?? undefined, statement: r.statement ?? undefined, reason: r.reason }));
  } catch (error) {
    throw fromServerError(error, 'target');
  }
}
