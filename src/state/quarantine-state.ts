/**
 * The target-side state of quarantine (docs/quarantine.md): the stop a
 * deterministic apply error left (`pgtide.apply_stop`: the span of the batch
 * that failed and whether the user asked to skip), and the quarantined
 * transactions themselves (`pgtide.quarantine`).
 *
 * A stop is recorded on the engine's pool, not in the failed batch (which
 * rolled back). The quarantine rows are written by the apply writer, in the
 * batch that moves the applied position past their transaction
 * (sinks/postgres/isolation-stage.ts); here they are only read and deleted.
 */
import type postgres from 'postgres';
import { formatLsn, parseLsn, type Lsn } from '../core/lsn.js';
import { fromServerError, PgtideError, redact } from '../core/errors.js';
import { serverErrorFields } from '../core/error-class.js';

export interface ApplyStop {
  /** The applied position when apply stopped: the failed batch began after it. */
  readonly fromLsn: Lsn;
  /** The highest commit LSN of the failed batch: every transaction it held commits at or below. */
  readonly untilLsn: Lsn;
  readonly errorCode: string;
  readonly sqlState: string | undefined;
  readonly errorMessage: string;
  /** `pgtide skip` asked the next start to quarantine the failing transaction. */
  readonly skip: boolean;
  /** `pgtide skip --lsn`: quarantine exactly this transaction (its commit LSN). */
  readonly skipLsn: Lsn | undefined;
}

export interface StopRecord {
  readonly fromLsn: Lsn;
  readonly untilLsn: Lsn;
  readonly error: PgtideError;
}

/** Recorded when apply stops on a deterministic error; a new stop replaces an older one (and its skip). */
export async function recordApplyStop(sql: postgres.Sql, subscription: string, stop: StopRecord): Promise<void> {
  await sql.unsafe(
    `INSERT INTO pgtide.apply_stop (subscription, from_lsn, until_lsn, error_code, sql_state, error_message, skip, skip_lsn, recorded_at)
     VALUES ($1, $2::text::pg_lsn, $3::text::pg_lsn, $4, $5, $6, false, NULL, now())
     ON CONFLICT (subscription) DO UPDATE SET from_lsn = EXCLUDED.from_lsn, until_lsn = EXCLUDED.until_lsn, error_code = EXCLUDED.error_code,
       sql_state = EXCLUDED.sql_state, error_message = EXCLUDED.error_message, skip = false, skip_lsn = NULL, recorded_at = now()`,
    [subscription, formatLsn(stop.fromLsn), formatLsn(stop.untilLsn), stop.error.code, stop.error.sqlState ?? null, redact(stop.error.message)]);
}

/**
 * Undefined when there is none, or the state schema predates it. Any other failure is thrown:
 * a start that could not read a skip request must not apply as if there were none.
 */
export async function readApplyStop(sql: postgres.Sql, subscription: string): Promise<ApplyStop | undefined> {
  const rows = await sql.unsafe<{ from_lsn: string; until_lsn: string; error_code: string; sql_state: string | null; error_message: string; skip: boolean; skip_lsn: string | null }[]>(
    `SELECT from_lsn::text, until_lsn::text, error_code, sql_state, error_message, skip, skip_lsn::text FROM pgtide.apply_stop WHERE subscription = $1`,
    [subscription]).catch((error: unknown) => {
    if (serverErrorFields(error).code === '42P01') return [];
    throw fromServerError(error, 'target');
  });
  const row = rows[0];
  if (!row) return undefined;
  return {
    fromLsn: parseLsn(row.from_lsn), untilLsn: parseLsn(row.until_lsn), errorCode: row.error_code, sqlState: row.sql_state ?? undefined,
    errorMessage: row.error_message, skip: row.skip, skipLsn: row.skip_lsn ? parseLsn(row.skip_lsn) : undefined,
  };
}

/** Apply moved past the stopped span and nothing is left to skip: the stop is over. */
export async function clearApplyStop(sql: postgres.Sql, subscription: string, durable: Lsn): Promise<void> {
  await sql.unsafe(`DELETE FROM pgtide.apply_stop WHERE subscription = $1 AND until_lsn <= $2::text::pg_lsn`, [subscription, formatLsn(durable)]);
}

/**
 * `pgtide skip`: the next start quarantines the failing transaction of the
 * recorded stop, or (with `lsn`) the transaction that commits at `lsn`.
 */
export async function requestSkip(sql: postgres.Sql, subscription: string, lsn: Lsn | undefined, applied: Lsn): Promise<ApplyStop> {
  const recorded = await readApplyStop(sql, subscription);
  // Apply moved past a stop the engine has not cleared yet (it clears at its next attempt).
  const stop = recorded && recorded.untilLsn > applied ? recorded : undefined;
  if (lsn !== undefined && lsn <= applied) {
    throw new PgtideError('NOTHING_TO_SKIP', `the source transaction committed at ${formatLsn(lsn)} is already behind the applied position ${formatLsn(applied)}: it was applied (or quarantined) before. Nothing was changed.`);
  }
  if (!stop && lsn === undefined) {
    throw new PgtideError('NOTHING_TO_SKIP', `subscription "${subscription}" has no stopped transaction to skip (apply did not stop on a deterministic error, or it moved on since). Name one with --lsn <commit LSN> (pgtide status shows the last error). Nothing was changed.`);
  }
  if (stop && lsn === undefined) {
    await sql.unsafe(`UPDATE pgtide.apply_stop SET skip = true, skip_lsn = NULL WHERE subscription = $1`, [subscription]);
    return { ...stop, skip: true, skipLsn: undefined };
  }
  // A named LSN: isolate up to it at least, so the transactions before it in its batch apply.
  const until = stop && stop.untilLsn > lsn! ? stop.untilLsn : lsn!;
  await sql.unsafe(
    `INSERT INTO pgtide.apply_stop (subscription, from_lsn, until_lsn, error_code, sql_state, error_message, skip, skip_lsn)
     VALUES ($1, $2::text::pg_lsn, $3::text::pg_lsn, 'SKIPPED', NULL, 'skipped by pgtide skip --lsn', true, $4::text::pg_lsn)
     ON CONFLICT (subscription) DO UPDATE SET until_lsn = EXCLUDED.until_lsn, skip = true, skip_lsn = EXCLUDED.skip_lsn`,
    [subscription, formatLsn(applied), formatLsn(until), formatLsn(lsn!)]);
  return {
    fromLsn: stop?.fromLsn ?? applied, untilLsn: until, errorCode: stop?.errorCode ?? 'SKIPPED', sqlState: stop?.sqlState,
    errorMessage: stop?.errorMessage ?? 'skipped by pgtide skip --lsn', skip: true, skipLsn: lsn,
  };
}

export interface QuarantineRow {
  readonly id: string;
  readonly sourceXid: string;
  readonly commitLsn: string;
  readonly endLsn: string;
  readonly commitTime: Date | null;
  readonly origin: string | null;
  readonly errorCode: string;
  readonly sqlState: string | null;
  readonly errorMessage: string;
  readonly tables: readonly string[];
  readonly changeCount: number;
  readonly quarantinedAt: Date;
}

type RawRow = {
  id: string; source_xid: string; commit_lsn: string; end_lsn: string; commit_time: Date | null; origin: string | null; error_code: string;
  sql_state: string | null; error_message: string; tables: string[]; change_count: number; quarantined_at: Date;
};

const COLUMNS = `id::text, source_xid::text, commit_lsn::text, end_lsn::text, commit_time, origin, error_code, sql_state, error_message,
  tables, jsonb_array_length(changes) AS change_count, quarantined_at`;

function toRow(r: RawRow): QuarantineRow {
  return {
    id: r.id, sourceXid: r.source_xid, commitLsn: r.commit_lsn, endLsn: r.end_lsn, commitTime: r.commit_time, origin: r.origin, errorCode: r.error_code,
    sqlState: r.sql_state, errorMessage: r.error_message, tables: r.tables, changeCount: Number(r.change_count), quarantinedAt: r.quarantined_at,
  };
}

export async function listQuarantine(sql: postgres.Sql, subscription: string): Promise<QuarantineRow[]> {
  const rows = await sql.unsafe<RawRow[]>(`SELECT ${COLUMNS} FROM pgtide.quarantine WHERE subscription = $1 ORDER BY id`, [subscription]);
  return rows.map(toRow);
}

/** The row and its changes; QUARANTINE_NOT_FOUND when this subscription holds no such id. */
export async function readQuarantined(sql: postgres.Sql, subscription: string, id: string, lock = false): Promise<{ readonly row: QuarantineRow; readonly changes: unknown }> {
  const rows = await sql.unsafe<(RawRow & { changes: unknown })[]>(
    `SELECT ${COLUMNS}, changes FROM pgtide.quarantine WHERE subscription = $1 AND id = $2::text::bigint${lock ? ' FOR UPDATE' : ''}`, [subscription, id]);
  const row = rows[0];
  if (!row) throw notFound(subscription, id);
  return { row: toRow(row), changes: row.changes };
}

export async function deleteQuarantined(sql: postgres.Sql, subscription: string, id: string): Promise<void> {
  const rows = await sql.unsafe(`DELETE FROM pgtide.quarantine WHERE subscription = $1 AND id = $2::text::bigint RETURNING id`, [subscription, id]);
  if (rows.length === 0) throw notFound(subscription, id);
}

function notFound(subscription: string, id: string): PgtideError {
  return new PgtideError('QUARANTINE_NOT_FOUND', `subscription "${subscription}" holds no quarantined transaction with id ${id}; pgtide quarantine list --config F shows the ids.`);
}

/** 0 when there are none, or the state schema predates quarantine. */
export async function countQuarantined(sql: postgres.Sql, subscription: string): Promise<number> {
  const rows = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM pgtide.quarantine WHERE subscription = $1`, [subscription]).catch(() => []);
  return rows[0]?.n ?? 0;
}
