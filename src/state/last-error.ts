/**
 * The last error the engine retried or stopped on, kept in the target's
 * `pgtide.last_error` so `pgtide status` (another process) can show it.
 * Written best-effort and with a time limit: the error being recorded may be
 * that the target is unreachable, and recording must never delay a retry or
 * hide the error itself.
 */
import type postgres from 'postgres';
import { setTimeout as sleep } from 'node:timers/promises';
import { redact, type PgtideError } from '../core/errors.js';

export interface LastErrorRow {
  readonly code: string;
  readonly sqlState: string | undefined;
  readonly message: string;
  readonly detail: string | undefined;
  /** True when pgtide retries it; false when pgtide stopped on it. */
  readonly retrying: boolean;
  readonly occurredAt: Date;
}

const WRITE_LIMIT_MS = 3000;

async function bounded(work: Promise<unknown>): Promise<void> {
  work.catch(() => {});
  await Promise.race([work.then(() => {}, () => {}), sleep(WRITE_LIMIT_MS)]);
}

export class LastErrorStore {
  readonly #sql: postgres.Sql;
  readonly #subscription: string;
  /** A row may exist (from this process or an earlier run) until cleared once. */
  #maybeSet = true;

  constructor(sql: postgres.Sql, subscription: string) {
    this.#sql = sql;
    this.#subscription = subscription;
  }

  async record(error: PgtideError, retrying: boolean): Promise<void> {
    this.#maybeSet = true;
    await bounded(this.#sql.unsafe(
      `INSERT INTO pgtide.last_error (subscription, code, sql_state, message, detail, retrying, occurred_at)
       VALUES ($1, $2, $3, $4, $5, $6::text::boolean, now())
       ON CONFLICT (subscription) DO UPDATE SET code = EXCLUDED.code, sql_state = EXCLUDED.sql_state, message = EXCLUDED.message,
         detail = EXCLUDED.detail, retrying = EXCLUDED.retrying, occurred_at = EXCLUDED.occurred_at`,
      [this.#subscription, error.code, error.sqlState ?? null, redact(error.message), error.detail ?? null, String(retrying)]));
  }

  /** Apply made progress: the recorded error is over. One DELETE per episode, not per batch. */
  async clear(): Promise<void> {
    if (!this.#maybeSet) return;
    this.#maybeSet = false;
    await bounded(this.#sql.unsafe(`DELETE FROM pgtide.last_error WHERE subscription = $1`, [this.#subscription]));
  }
}

/** Undefined when there is none, or the state schema predates it. */
export async function readLastError(sql: postgres.Sql, subscription: string): Promise<LastErrorRow | undefined> {
  const rows = await sql.unsafe<{ code: string; sql_state: string | null; message: string; detail: string | null; retrying: boolean; occurred_at: Date }[]>(
    `SELECT code, sql_state, message, detail, retrying, occurred_at FROM pgtide.last_error WHERE subscription = $1`, [subscription]).catch(() => []);
  const row = rows[0];
  if (!row) return undefined;
  return { code: row.code, sqlState: row.sql_state ?? undefined, message: row.message, detail: row.detail ?? undefined, retrying: row.retrying, occurredAt: row.occurred_at };
}
