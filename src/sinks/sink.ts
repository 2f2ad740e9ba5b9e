/**
 * The contract between the stream loop and whatever applies committed
 * transactions. The loop acknowledges to the source only `durableLsn` (or a
 * keepalive position while nothing is pending), so a sink must never report
 * as durable what a crash could still lose.
 *
 * Implementations: `sinks/postgres/` (apply-writer.ts, opened with its
 * streamed road by postgres-sink.ts) and `sinks/ndjson/` (ndjson-sink.ts).
 */
import type { StreamedTransactionApplier, TransactionSink } from '../changes/change.js';
import type { Lsn } from '../core/lsn.js';

export interface Sink extends TransactionSink {
  /** End LSN of the last source transaction durably applied: what may be acknowledged. */
  readonly durableLsn: Lsn;
  /** Received but not yet durable: a batch open, a commit in flight, or a failed batch not yet rolled back. */
  readonly hasPendingWork: boolean;
  /** True between source transactions: only then may pending work be committed. */
  readonly atBoundary: boolean;
  /** Makes pending work durable (call at a boundary); `durableLsn` follows once it is. */
  commitPending(): Promise<void>;
  /** Throws pending work away; `durableLsn` stays where it was. */
  rollback(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A sink opened for one streaming attempt, as the engine hands it to the
 * pipeline (pipeline/attempt.ts).
 */
export interface OpenedSink {
  readonly sink: Sink;
  /** Set when the sink applies large streamed transactions while they stream. */
  readonly streamed: StreamedTransactionApplier | undefined;
  /**
   * Where the gate hands ordinary transactions, when not to the sink itself: a sink's own
   * stage in front of it (the PostgreSQL sink's DDL stage, which needs its writer).
   */
  readonly entry?: TransactionSink | undefined;
  /** Source transactions and changes made durable so far, for metrics. */
  readonly stats: { readonly transactions: number; readonly changes: number };
}
