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
import { classify, isRetried, serverErrorFields } from '../../core/error-class.js';

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
  if (sqlState === '42501') {
    const table = fields.table ? `"${fields.table}"` : context.table ?? 'the table named above';
    return new PgtideError('PERMISSION_DENIED', `${head} Grant the apply privileges on the target: GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ${context.table ?? table} TO ${quoteRole(userOf(targetUrl))}; then start pgtide again (see docs/privileges.md).`, options);
  }
  switch (errorClass) {
    case 'transient':
      return new PgtideError(base.code === 'INTERNAL' ? 'APPLY_FAILED' : base.code, `${head} This can pass by itself; pgtide retries.`, options);
    case 'conflict':
      return new PgtideError('APPLY_FAILED', `${head} A constraint of the target refuses the source's change (a row already there, or a constraint the source does not have). Fix the row or the constraint on the target; pgtide retries until the change applies.`, options);
    case 'deterministic':
      return new PgtideError('APPLY_FAILED', `${head} This fails the same way every time, so pgtide stops: make the target accept the change (its definition, privileges or data), then start pgtide again.`, options);
  }
}
