/**
 * Row changes as the apply side sees them: decoded, resolved against the
 * relation cache, and numbered. A committed source transaction becomes one
 * `SourceTransaction`, whatever way it arrived (a plain Begin…Commit or a
 * streamed transaction replayed at Stream Commit).
 */
import type { Lsn } from './lsn.js';
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

export interface SourceTransaction {
  readonly xid: number;
  /** LSN of the commit record. Changes to a table apply only when this is above the table's sync LSN. */
  readonly commitLsn: Lsn;
  /** End of the commit record: the position recorded as applied and confirmed to the source. */
  readonly endLsn: Lsn;
  readonly commitTime: PgTimestamp;
  /** Set when the transaction was itself replicated into the source (Origin message). */
  readonly origin: string | undefined;
  readonly changes: readonly RowChange[];
}
