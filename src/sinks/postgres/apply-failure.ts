/**
 * The apply writer pipelines a batch's statements, and a catalog lookup may
 * run behind them in the same target transaction. Once one statement fails,
 * the server answers everything after it with 25P02 ("current transaction is
 * aborted"), and a simple-protocol COMMIT sent with xact_setup is skipped, so
 * the session stays aborted for the next batch too. Whatever settles first in
 * JavaScript is therefore not necessarily what failed first on the server.
 *
 * FirstFailure keeps the failure that caused the others: the first one
 * recorded that is not an echo (25P02, or the guard between pipelined batches
 * whose only job is to fail after a failed batch). Statements settle in the
 * order they were sent, so the first recorded real failure is the server's
 * first. Each record carries what the statement was doing (table, source
 * transactions) and its batch's fold state, so the error that is raised is
 * the right one: a fold conflict replays, anything else names the table, the
 * source transactions and the server's message and DETAIL.
 */
import { formatLsn, type Lsn } from '../../core/lsn.js';
import type { TransactionInfo } from '../../changes/change.js';
import { fromServerError, PgtideError, redact } from '../../core/errors.js';
import { classify, isRetried, serverErrorFields, type ServerErrorFields } from '../../core/error-class.js';
import { CONFLICT_STOP_SQLSTATE } from './conflict-statements.js';
import { uniqueStop } from './unique-conflicts.js';

/** A batch's fold state, shared by reference with the records of its statements. */
export interface BatchMark {
  folded: boolean;
  maxCommitLsn: Lsn;
}

/** The source transactions whose changes a statement carries (first and last, in commit order). */
export interface SourceSpan {
  readonly first: TransactionInfo;
  last: TransactionInfo;
}

export interface StatementContext {
  /** Qualified target table name(s) the statement writes. */
  readonly table?: string;
  readonly span?: SourceSpan | undefined;
  /** The statement only fails because an earlier one did (the guard between batches). */
  readonly echo?: boolean;
}

export interface FailureRecord {
  readonly error: unknown;
  readonly context: StatementContext;
  readonly mark: BatchMark;
}

export function extendSpan(span: SourceSpan | undefined, tx: TransactionInfo | undefined): SourceSpan | undefined {
  if (!tx) return span;
  if (!span) return { first: tx, last: tx };
  span.last = tx;
  return span;
}

function isEcho(record: FailureRecord): boolean {
  return record.context.echo === true || serverErrorFields(record.error).code === '25P02';
}

export class FirstFailure {
  #record: FailureRecord | undefined;

  get pending(): boolean { return this.#record !== undefined; }

  /** Keeps `record` unless a real failure is already known; a real one replaces an echo. */
  record(record: FailureRecord): void {
    if (this.#record === undefined || (isEcho(this.#record) && !isEcho(record))) this.#record = record;
  }

  take(): FailureRecord | undefined {
    const record = this.#record;
    this.#record = undefined;
    return record;
  }

  clear(): void { this.#record = undefined; }
}

function describeTx(tx: TransactionInfo): string {
  // A streamed transaction's commit LSN is not known while it is applied.
  return tx.streamed ? `xid ${tx.xid}` : `xid ${tx.xid}, commit LSN ${formatLsn(tx.commitLsn)}`;
}

function describeSpan(span: SourceSpan): string {
  if (span.first === span.last || span.first.xid === span.last.xid) return `source transaction ${describeTx(span.first)}`;
  return `source transactions ${describeTx(span.first)} to ${describeTx(span.last)}`;
}

function userOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).username) || 'the target user';
  } catch {
    return 'the target user';
  }
}

const quoteRole = (role: string): string => (/^[a-z_][a-z0-9_$]*$/.test(role) ? role : `"${role.replace(/"/g, '""')}"`);

/**
 * The error raised for a failed apply statement. Retryable exactly when the
 * classifier says so (error-class.ts).
 */
export function applyError(record: FailureRecord, targetUrl: string): PgtideError {
  const { error, context } = record;
  const fields = serverErrorFields(error);
  const base = fromServerError(error, 'target');
  const sqlState = base.sqlState;
  const errorClass = classify(sqlState ?? fields.code);
  const where = [context.table ? `on ${context.table}` : undefined, context.span ? describeSpan(context.span) : undefined].filter(Boolean).join(', ');
  const server = redact(fields.message ?? base.message);
  const sentence = (text: string): string => redact(text).replace(/\.$/, '');
  const detail = fields.detail ? ` DETAIL: ${sentence(fields.detail)}.` : '';
  const hint = fields.hint ? ` HINT: ${sentence(fields.hint)}.` : '';
  const head = `applying to the target failed${where ? ` ${where}` : ''}: ${server}${sqlState ? ` (SQLSTATE ${sqlState})` : ''}.${detail}${hint}`;
  const options = { sqlState, detail: fields.detail, retryable: isRetried(errorClass), cause: error };
  if (sqlState === CONFLICT_STOP_SQLSTATE || errorClass === 'conflict') return conflictStop(record, fields, sqlState, error);
  if (sqlState === '42501') {
    const table = fields.table ? `"${fields.table}"` : context.table ?? 'the table named above';
    return new PgtideError('PERMISSION_DENIED', `${head} Grant the apply privileges on the target: GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ${context.table ?? table} TO ${quoteRole(userOf(targetUrl))}; then start pgtide again (see docs/privileges.md).`, options);
  }
  switch (errorClass) {
    case 'transient':
      return new PgtideError(base.code === 'INTERNAL' ? 'APPLY_FAILED' : base.code, `${head} This can pass by itself; pgtide retries.`, options);
    case 'deterministic':
      return new PgtideError('APPLY_FAILED', `${head} This fails the same way every time, so pgtide stops: make the target accept the change (its definition, privileges or data), then start pgtide again.`, options);
  }
}

/**
 * A conflict that the table's policy says to stop on, or a constraint only the
 * target has (class 23). Not retried: the same change meets the same row or
 * constraint every time, and a retry loop would hide that apply has stopped
 * (the built-in worker retries for ever). The message names the kind, the
 * table, the key, the source transaction(s) and the server's words.
 */
function conflictStop(record: FailureRecord, fields: ServerErrorFields, sqlState: string | undefined, cause: unknown): PgtideError {
  const { context } = record;
  const span = context.span ? `, ${describeSpan(context.span)}` : '';
  const table = context.table ?? (fields.table ? `"${fields.table}"` : 'a target table');
  const options = { sqlState, detail: fields.detail, retryable: false, cause };
  if (sqlState === CONFLICT_STOP_SQLSTATE) {
    const kind = fields.hint ?? 'conflict';
    // A unique conflict named by the check-mode statement: the server's SQLSTATE was 23505.
    const unique = uniqueStop(kind, fields.detail);
    if (unique) return new PgtideError('APPLY_CONFLICT', `conflict ${kind} on ${table}${span}: ${unique.message}`, { ...options, sqlState: '23505', detail: unique.detail });
    const what = kind === 'update_missing' ? 'the row an UPDATE changes is missing on the target'
      : kind === 'update_deleted' ? 'the row an UPDATE changes was removed on the target by a DELETE pgtide applied (its tombstone holds the key; see conflicts.tombstones)' : kind === 'delete_missing' ? 'the row a DELETE removes is missing on the target' : 'the target diverged from the source';
    return new PgtideError('APPLY_CONFLICT', `conflict ${kind} on ${table}${span}: ${what} (key ${fields.detail ?? 'unknown'}). The conflict policy for this table is error, so pgtide stops: fix the row on the target, or set conflicts.policy (or conflicts.tables) to skip or apply_remote, then start pgtide again (see docs/conflicts.md).`, options);
  }
  const server = redact(fields.message ?? String(cause));
  const detail = fields.detail ? ` DETAIL: ${redact(fields.detail).replace(/\.$/, '')}.` : '';
  if (sqlState === '23505') {
    return new PgtideError('APPLY_CONFLICT', `conflict insert_exists or update_exists on ${table}${span}: ${server} (SQLSTATE 23505).${detail} A row on the target already holds this key${fields.constraint ? ` (${fields.constraint})` : ''}. pgtide stops instead of retrying for ever: remove or fix the row on the target, or set conflicts.policy (or conflicts.tables) to skip or apply_remote for a conflict on the replica identity key, then start pgtide again (see docs/conflicts.md).`, options);
  }
  return new PgtideError('APPLY_CONFLICT', `applying to the target failed on ${table}${span}: ${server}${sqlState ? ` (SQLSTATE ${sqlState})` : ''}.${detail} A constraint of the target refuses the source's change (one the source does not have). pgtide stops instead of retrying for ever: fix the row or the constraint on the target, then start pgtide again.`, options);
}
