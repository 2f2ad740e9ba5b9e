/**
 * Finding and quarantining the one failing source transaction of a stopped
 * batch (docs/quarantine.md).
 *
 * A batch holds many source transactions, and a deterministic error rolls all
 * of them back; the statement that failed may carry several transactions'
 * rows (runs are per table, not per transaction). So after a stop, the next
 * attempt applies the stopped stretch again, up to the batch's highest commit
 * LSN, one source transaction per target transaction: each good one commits
 * with its own applied position, and the first one that fails is known
 * exactly. That failure ends the attempt (IsolationFailure); the engine
 * decides (skip asked, or `apply.onDeterministicError: quarantine`) and the
 * next attempt, which streams from right before it, quarantines it: its
 * changes are not applied but written to `pgtide.quarantine` in the target
 * transaction that moves the applied position past it.
 *
 * Crash safety follows from the writer's invariant (apply-writer.ts): every
 * target transaction carries its applied position. A transaction is applied
 * (its batch committed), quarantined (its quarantine row committed with the
 * position), or neither, and then the next start streams it again; there is
 * no state in between. The UNIQUE (subscription, commit_lsn) of the
 * quarantine table makes a second copy impossible.
 *
 * Large transactions that `apply.streamedApply` applies while they stream
 * bypass this stage (their own connection); see the limits in the docs.
 */
import type { Logger } from 'pino';
import type { CommitInfo, RowChange, TransactionInfo, TransactionSink } from '../../changes/change.js';
import { formatLsn, ZERO_LSN, type Lsn } from '../../core/lsn.js';
import { PgtideError } from '../../core/errors.js';
import type { ApplyWriter } from './apply-writer.js';
import { consumeSkipStatement, quarantinedChange, quarantineInsert, tablesOf, type QuarantinedChange, type QuarantineReason } from './quarantine-record.js';

/** An error that stops apply and fails the same way on every retry: the candidates for quarantine. */
export function isDeterministicApplyError(error: unknown): error is PgtideError {
  return error instanceof PgtideError && !error.retryable && (error.code === 'APPLY_FAILED' || error.code === 'APPLY_CONFLICT');
}

/**
 * One isolated source transaction failed deterministically. Retryable in form
 * (the engine starts a new attempt after deciding); `failure` is what failed.
 */
export class IsolationFailure extends PgtideError {
  readonly tx: TransactionInfo;
  readonly failure: PgtideError;
  constructor(tx: TransactionInfo, failure: PgtideError) {
    super(failure.code, failure.message, { retryable: true, sqlState: failure.sqlState, detail: failure.detail, cause: failure });
    this.name = 'IsolationFailure';
    this.tx = tx;
    this.failure = failure;
  }
}

export interface QuarantineOrder {
  readonly reason: QuarantineReason;
  /** This quarantine uses up a `pgtide skip` (cleared in the same target transaction). */
  readonly consumesSkip: boolean;
}

export interface QuarantinedInfo {
  readonly xid: number;
  readonly commitLsn: Lsn;
  readonly tables: readonly string[];
  readonly changes: number;
}

export interface IsolationPlan {
  /** Source transactions committing at or below this are applied one per target transaction. */
  readonly untilLsn: Lsn;
  /** Transactions (by commit LSN) to quarantine instead of applying. */
  readonly quarantine: ReadonlyMap<Lsn, QuarantineOrder>;
  readonly subscription: string;
  readonly logger: Logger;
  /** After a quarantine committed. */
  readonly onQuarantined?: (info: QuarantinedInfo) => void;
}

type Mode = 'pass' | 'isolate' | 'quarantine';

export class IsolationStage implements TransactionSink {
  readonly #next: TransactionSink;
  readonly #writer: ApplyWriter;
  readonly #plan: IsolationPlan;
  #tx: TransactionInfo | undefined;
  #mode: Mode = 'pass';
  #changes: QuarantinedChange[] = [];

  /** `next`: where transactions go (the DDL stage, or the writer); `writer`: the writer behind it. */
  constructor(next: TransactionSink, writer: ApplyWriter, plan: IsolationPlan) {
    this.#next = next;
    this.#writer = writer;
    this.#plan = plan;
  }

  begin(tx: TransactionInfo): void | Promise<void> {
    this.#tx = tx;
    // A transaction applied while it streamed has no commit LSN here; it never reaches this stage.
    if (tx.commitLsn === ZERO_LSN || tx.commitLsn > this.#plan.untilLsn) {
      this.#mode = 'pass';
      return this.#next.begin(tx);
    }
    this.#mode = this.#plan.quarantine.has(tx.commitLsn) ? 'quarantine' : 'isolate';
    this.#changes = [];
    // Nothing of another transaction may share its target transaction.
    return this.#writer.hasPendingWork ? this.#writer.commitPending().then(() => this.#mode === 'isolate' ? this.#next.begin(tx) : undefined)
      : this.#mode === 'isolate' ? this.#next.begin(tx) : undefined;
  }

  change(change: RowChange): void | Promise<void> {
    switch (this.#mode) {
      case 'pass': return this.#next.change(change);
      case 'quarantine':
        this.#changes.push(quarantinedChange(change));
        return;
      case 'isolate': return this.#guard(() => this.#next.change(change));
    }
  }

  commit(info: CommitInfo): void | Promise<void> {
    switch (this.#mode) {
      case 'pass': return this.#next.commit(info);
      case 'quarantine': return this.#quarantine(info);
      case 'isolate': return this.#guard(async () => {
        await this.#next.commit(info);
        await this.#writer.commitPending();
      });
    }
  }

  async #quarantine(info: CommitInfo): Promise<void> {
    const tx = this.#tx!;
    const order = this.#plan.quarantine.get(tx.commitLsn)!;
    const changes = this.#changes;
    this.#changes = [];
    this.#writer.begin(tx);
    this.#writer.issueInBatch(quarantineInsert(this.#plan.subscription, tx, info, order.reason, changes));
    if (order.consumesSkip) this.#writer.issueInBatch(consumeSkipStatement(this.#plan.subscription));
    await this.#writer.commit(info);
    await this.#writer.commitPending();
    const tables = tablesOf(changes);
    this.#plan.logger.warn({ xid: tx.xid, commitLsn: formatLsn(tx.commitLsn), tables, changes: changes.length, code: order.reason.code },
      `quarantined source transaction xid ${tx.xid} (commit LSN ${formatLsn(tx.commitLsn)}, ${changes.length} change(s) on ${tables.join(', ') || 'no table'}) instead of applying it: ${order.reason.message} It is held in pgtide.quarantine: pgtide quarantine list | replay | drop (docs/quarantine.md).`);
    this.#plan.onQuarantined?.({ xid: tx.xid, commitLsn: tx.commitLsn, tables, changes: changes.length });
  }

  #guard(work: () => void | Promise<void>): void | Promise<void> {
    let result: void | Promise<void>;
    try {
      result = work();
    } catch (error) {
      throw this.#failure(error);
    }
    if (result instanceof Promise) return result.catch((error: unknown) => { throw this.#failure(error); });
  }

  #failure(error: unknown): unknown {
    return isDeterministicApplyError(error) && this.#tx ? new IsolationFailure(this.#tx, error) : error;
  }
}
