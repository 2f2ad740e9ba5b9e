/**
 * The one place that decides whether a failure may go away by itself.
 * Everything that sets `retryable` on a PgtideError made from a server or
 * network error asks `classify()`, so the engine's retry loop, the apply
 * writer and the copy agree on it.
 *
 * - `transient`: the same work can succeed later without anyone acting
 *   (network, a server restarting or shutting down, lock and serialization
 *   conflicts with other sessions, too many connections). Retried with backoff.
 * - `conflict`: an integrity constraint of the target refuses the change
 *   (class 23: a row already there, a CHECK or NOT NULL only the target has).
 *   Retried with backoff where it is met outside apply; the apply writer
 *   stops on it instead (sinks/postgres/apply-failure.ts, docs/conflicts.md):
 *   the built-in worker retries it for ever, which hides that apply stopped.
 * - `deterministic`: the same statement fails the same way every time
 *   (privileges, a TRUNCATE the target refuses, a value the target's column
 *   rejects). Retrying would only loop; pgtide stops and says what to fix.
 *
 * SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
export type ErrorClass = 'transient' | 'conflict' | 'deterministic';

/** Codes of postgres.js and Node for a connection that could not be made or was lost. */
export const NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT',
]);

const TRANSIENT_SQLSTATES: ReadonlySet<string> = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, recovery)
  '57014', // query_canceled (pg_cancel_backend, statement_timeout)
  '55P03', // lock_not_available (lock_timeout)
  '55006', // object_in_use (the slot or origin is held by a session still going away)
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '53300', // too_many_connections
  '53200', // out_of_memory
  // "current transaction is aborted" only echoes an earlier error. The apply writer never
  // reports it when it knows that error; one that arrives alone is a state a new session clears.
  '25P02',
]);

export function classify(code: string | undefined): ErrorClass {
  if (code === undefined) return 'deterministic';
  if (NETWORK_CODES.has(code)) return 'transient';
  // Class 08: connection exception.
  if (/^08/.test(code) || TRANSIENT_SQLSTATES.has(code)) return 'transient';
  // Class 23: integrity constraint violation.
  if (/^23/.test(code)) return 'conflict';
  return 'deterministic';
}

/** Transient failures and conflicts are retried; deterministic ones stop pgtide. */
export function isRetried(errorClass: ErrorClass): boolean {
  return errorClass !== 'deterministic';
}

/** The fields of a server error (postgres.js copies the ErrorResponse fields onto the error). */
export interface ServerErrorFields {
  readonly code: string | undefined;
  readonly message: string | undefined;
  readonly detail: string | undefined;
  readonly hint: string | undefined;
  readonly table: string | undefined;
  readonly constraint: string | undefined;
}

export function serverErrorFields(error: unknown): ServerErrorFields {
  const shape = (typeof error === 'object' && error !== null ? error : {}) as Record<string, unknown>;
  const text = (key: string): string | undefined => (typeof shape[key] === 'string' && shape[key] !== '' ? shape[key] : undefined);
  return { code: text('code'), message: text('message'), detail: text('detail'), hint: text('hint'), table: text('table_name'), constraint: text('constraint_name') };
}
