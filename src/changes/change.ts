/**
 * Row changes as the apply side sees them: decoded, resolved against the
 * relation cache, and numbered. A committed source transaction becomes one
 * `SourceTransaction`, whatever way it arrived (a plain Begin…Commit or a
 * streamed transaction replayed at Stream Commit).
 */
import type { Lsn } from '../core/lsn.js';
import type { PgTimestamp, Tuple } from '../protocol/messages.js';
import type { Relation } from './relation-cache.js';

/**
 * Monotonic position of a change within the whole stream. LSNs cannot order
 * changes inside a transaction (concurrent transactions interleave their WAL
 * records, and a streamed transaction's changes arrive in chunks), so every
 * change is numbered as it is assembled.
 */
export type OpId = number & { readonly __brand: 'OpId' };

export type RowChange =
  | { readonly kind: 'insert'; readonly opId: OpId; readonly relation: Relation; readonly newTuple: Tuple }
  | { readonly kind: 'update'; readonly opId: OpId; readonly relation: Relation; readonly oldTuple: Tuple | undefined; readonly newTuple: Tuple }
  | { readonly kind: 'delete'; readonly opId: OpId; readonly relation: Relation; readonly oldTuple: Tuple }
  | { readonly kind: 'truncate'; readonly opId: OpId; readonly relations: readonly Relation[]; readonly cascade: boolean; readonly restartIdentity: boolean }
  | { readonly kind: 'message'; readonly opId: OpId; readonly prefix: string; readonly content: Uint8Array };

/** What is known when a source transaction starts to be applied. */
export interface TransactionInfo {
  readonly xid: number;
  /**
   * LSN of the commit record (pgoutput's Begin final_lsn). Changes to a table
   * apply only when this is above the table's sync LSN, and a transaction whose
   * commit LSN is below the recorded applied position was applied before.
   */
  readonly commitLsn: Lsn;
  readonly commitTime: PgTimestamp;
  /** Set when the transaction was itself replicated into the source (Origin message). */
  readonly origin: string | undefined;
  /** True when it arrived as a streamed (large, in-progress) transaction replayed at Stream Commit. */
  readonly streamed: boolean;
}

export interface CommitInfo {
  readonly commitLsn: Lsn;
  /** End of the commit record: the position recorded as applied and confirmed to the source. */
  readonly endLsn: Lsn;
  readonly commitTime: PgTimestamp;
}

/**
 * Where assembled transactions go. Calls arrive strictly in commit order:
 * begin, change*, commit. A returned promise is awaited before the next call,
 * which is how apply backpressure reaches the replication stream.
 */
export interface TransactionSink {
  begin(tx: TransactionInfo): void | Promise<void>;
  change(change: RowChange): void | Promise<void>;
  commit(info: CommitInfo): void | Promise<void>;
}

/**
 * Applies a streamed (in-progress) transaction while it streams, instead of
 * buffering it until Stream Commit. Optional: without it, or when `start`
 * declines, the assembler buffers (and spills) as usual.
 */
export interface StreamedTransactionApplier {
  /**
   * At the transaction's first chunk, once its Origin message (sent in the first chunk only)
   * was read: true to take it (then every later call for xid comes here).
   */
  start(xid: number, origin: string | undefined): Promise<boolean>;
  change(xid: number, subxid: number, change: RowChange): void | Promise<void>;
  /** Start of a later chunk of a transaction it took (Stream Start, not the first segment). */
  chunkStart(xid: number): void | Promise<void>;
  /** End of one chunk (Stream Stop): a good moment to send what is queued. */
  chunkEnd(xid: number): void;
  /** subxid === xid: the whole transaction aborted. */
  abort(xid: number, subxid: number): Promise<void>;
  commit(xid: number, info: CommitInfo, origin: string | undefined): Promise<void>;
  /** Drops every open transaction (connection lost; the server resends them). */
  reset(): Promise<void>;
  readonly openCount: number;
}
