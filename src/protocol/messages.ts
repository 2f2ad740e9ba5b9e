/**
 * pgoutput logical replication messages, protocol versions 1 to 4.
 *
 * Spec: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 *
 * Every message is one variant of the `PgoutputMessage` discriminated union,
 * keyed by `tag`. Messages sent inside a streamed transaction chunk (between
 * Stream Start and Stream Stop) carry the `xid` of the (sub)transaction they
 * belong to; outside a stream `xid` is undefined.
 */
import type { Lsn } from '../core/lsn.js';

/** Microseconds since 2000-01-01 00:00:00 UTC, as PostgreSQL sends it. */
export type PgTimestamp = bigint & { readonly __brand: 'PgTimestamp' };

/** One column value in a TupleData. The four kinds stay distinct. */
export type TupleValue =
  | { readonly kind: 'null' }
  /** An unchanged TOASTed value: the server did not send it; the target keeps what it has. */
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'text'; readonly value: string }
  | { readonly kind: 'binary'; readonly value: Uint8Array };

export type Tuple = readonly TupleValue[];

/** pg_class.relreplident */
export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface RelationColumn {
  readonly name: string;
  /** True when the column is part of the replica identity (the key). */
  readonly isKey: boolean;
  readonly typeOid: number;
  readonly typeMod: number;
}

export interface BeginMessage { readonly tag: 'begin'; readonly finalLsn: Lsn; readonly commitTime: PgTimestamp; readonly xid: number }
export interface CommitMessage { readonly tag: 'commit'; readonly flags: number; readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: PgTimestamp }
export interface OriginMessage { readonly tag: 'origin'; readonly originLsn: Lsn; readonly originName: string }
export interface RelationMessage {
  readonly tag: 'relation';
  readonly xid: number | undefined;
  readonly relationOid: number;
  readonly schema: string;
  readonly name: string;
  readonly replicaIdentity: ReplicaIdentity;
  readonly columns: readonly RelationColumn[];
}
export interface TypeMessage { readonly tag: 'type'; readonly xid: number | undefined; readonly typeOid: number; readonly schema: string; readonly name: string }
export interface InsertMessage { readonly tag: 'insert'; readonly xid: number | undefined; readonly relationOid: number; readonly newTuple: Tuple }
export interface UpdateMessage {
  readonly tag: 'update';
  readonly xid: number | undefined;
  readonly relationOid: number;
  /** 'K': only the key columns of the old row (others null); 'O': the whole old row (REPLICA IDENTITY FULL); undefined when the key did not change. */
  readonly oldKind: 'key' | 'full' | undefined;
  readonly oldTuple: Tuple | undefined;
  readonly newTuple: Tuple;
}
export interface DeleteMessage { readonly tag: 'delete'; readonly xid: number | undefined; readonly relationOid: number; readonly oldKind: 'key' | 'full'; readonly oldTuple: Tuple }
export interface TruncateMessage { readonly tag: 'truncate'; readonly xid: number | undefined; readonly cascade: boolean; readonly restartIdentity: boolean; readonly relationOids: readonly number[] }
export interface LogicalMessage { readonly tag: 'message'; readonly xid: number | undefined; readonly transactional: boolean; readonly lsn: Lsn; readonly prefix: string; readonly content: Uint8Array }
export interface StreamStartMessage { readonly tag: 'stream_start'; readonly xid: number; readonly firstSegment: boolean }
export interface StreamStopMessage { readonly tag: 'stream_stop' }
export interface StreamCommitMessage { readonly tag: 'stream_commit'; readonly xid: number; readonly flags: number; readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: PgTimestamp }
export interface StreamAbortMessage {
  readonly tag: 'stream_abort';
  readonly xid: number;
  /** Equal to xid when the whole transaction aborted; otherwise the aborted subtransaction. */
  readonly subxid: number;
  /** Present only with protocol v4 and `streaming = parallel`. */
  readonly abortLsn: Lsn | undefined;
  readonly abortTime: PgTimestamp | undefined;
}
export interface BeginPrepareMessage { readonly tag: 'begin_prepare'; readonly prepareLsn: Lsn; readonly endLsn: Lsn; readonly prepareTime: PgTimestamp; readonly xid: number; readonly gid: string }
export interface PrepareMessage { readonly tag: 'prepare'; readonly flags: number; readonly prepareLsn: Lsn; readonly endLsn: Lsn; readonly prepareTime: PgTimestamp; readonly xid: number; readonly gid: string }
export interface CommitPreparedMessage { readonly tag: 'commit_prepared'; readonly flags: number; readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: PgTimestamp; readonly xid: number; readonly gid: string }
export interface RollbackPreparedMessage { readonly tag: 'rollback_prepared'; readonly flags: number; readonly prepareEndLsn: Lsn; readonly rollbackEndLsn: Lsn; readonly prepareTime: PgTimestamp; readonly rollbackTime: PgTimestamp; readonly xid: number; readonly gid: string }
export interface StreamPrepareMessage { readonly tag: 'stream_prepare'; readonly flags: number; readonly prepareLsn: Lsn; readonly endLsn: Lsn; readonly prepareTime: PgTimestamp; readonly xid: number; readonly gid: string }

export type PgoutputMessage =
  | BeginMessage | CommitMessage | OriginMessage | RelationMessage | TypeMessage
  | InsertMessage | UpdateMessage | DeleteMessage | TruncateMessage | LogicalMessage
  | StreamStartMessage | StreamStopMessage | StreamCommitMessage | StreamAbortMessage
  | BeginPrepareMessage | PrepareMessage | CommitPreparedMessage | RollbackPreparedMessage | StreamPrepareMessage;

export type PgoutputTag = PgoutputMessage['tag'];

/**
 * Frames of the streaming replication sub-protocol that wrap pgoutput inside CopyData.
 * https://www.postgresql.org/docs/current/protocol-replication.html
 */
export type ReplicationFrame =
  | { readonly tag: 'xlog_data'; readonly walStart: Lsn; readonly walEnd: Lsn; readonly sendTime: PgTimestamp; readonly payload: Uint8Array }
  | { readonly tag: 'keepalive'; readonly walEnd: Lsn; readonly sendTime: PgTimestamp; readonly replyRequested: boolean };

/** PostgreSQL epoch (2000-01-01) in Unix milliseconds. */
export const PG_EPOCH_MS = 946_684_800_000;

export function pgTimestampToDate(ts: PgTimestamp): Date {
  return new Date(PG_EPOCH_MS + Number(ts / 1000n));
}

export function dateToPgTimestamp(date: Date | number): PgTimestamp {
  const ms = typeof date === 'number' ? date : date.getTime();
  return (BigInt(ms - PG_EPOCH_MS) * 1000n) as PgTimestamp;
}
