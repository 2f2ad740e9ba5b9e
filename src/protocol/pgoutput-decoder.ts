/**
 * Decoder for pgoutput logical replication messages (protocol versions 1 to 4).
 *
 * Layouts follow https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 * and the writer side in src/backend/replication/logical/proto.c. Pure: no I/O,
 * no state beyond whether we are inside a streamed chunk.
 *
 * Contract: for any input whatsoever, decoding either returns a message or
 * throws `DecodeError` whose `offset` lies in [0, payload length]. Every
 * message must be consumed exactly; leftover bytes are an error, because they
 * mean the layout we assumed (protocol version, streaming mode) is not the one
 * the server used, and carrying on would misread every later field.
 *
 * Size: one switch over every pgoutput message of protocol versions 1–4; the
 * messages share the reader and the version checks.
 */
import { DecodeError } from '../core/errors.js';
import { ByteReader } from './byte-reader.js';
import type {
  PgoutputMessage, PgTimestamp, ReplicaIdentity, RelationColumn, Tuple, TupleValue,
  UpdateMessage, DeleteMessage,
} from './messages.js';

export interface PgoutputDecoderOptions {
  /** The `proto_version` passed to START_REPLICATION. */
  readonly protocolVersion: 1 | 2 | 3 | 4;
  /**
   * True when START_REPLICATION used `streaming 'parallel'` (protocol 4, PostgreSQL 16+):
   * the server then appends the abort LSN and time to Stream Abort.
   */
  readonly parallelStreaming?: boolean;
}

const NULL_VALUE: TupleValue = Object.freeze({ kind: 'null' });
const UNCHANGED_VALUE: TupleValue = Object.freeze({ kind: 'unchanged' });

// Tag and marker bytes, as char codes so the dispatch switches on small integers.
const enum B {
  Begin = 0x42, // 'B'
  Commit = 0x43, // 'C'
  Origin = 0x4f, // 'O'
  Relation = 0x52, // 'R'
  Type = 0x59, // 'Y'
  Insert = 0x49, // 'I'
  Update = 0x55, // 'U'
  Delete = 0x44, // 'D'
  Truncate = 0x54, // 'T'
  Message = 0x4d, // 'M'
  StreamStart = 0x53, // 'S'
  StreamStop = 0x45, // 'E'
  StreamCommit = 0x63, // 'c'
  StreamAbort = 0x41, // 'A'
  BeginPrepare = 0x62, // 'b'
  Prepare = 0x50, // 'P'
  CommitPrepared = 0x4b, // 'K'
  RollbackPrepared = 0x72, // 'r'
  StreamPrepare = 0x70, // 'p'

  TupleNew = 0x4e, // 'N'
  TupleKey = 0x4b, // 'K'
  TupleOld = 0x4f, // 'O'

  ColNull = 0x6e, // 'n'
  ColUnchanged = 0x75, // 'u'
  ColText = 0x74, // 't'
  ColBinary = 0x62, // 'b'
}

/** Flag bits from proto.c. */
const MESSAGE_TRANSACTIONAL = 1;
const TRUNCATE_CASCADE = 1;
const TRUNCATE_RESTART_SEQS = 2;
const COLUMN_IS_KEY = 1;

function describeByte(byte: number): string {
  const printable = byte >= 0x20 && byte < 0x7f ? ` '${String.fromCharCode(byte)}'` : '';
  return `0x${byte.toString(16).padStart(2, '0')}${printable}`;
}

function readTimestamp(r: ByteReader): PgTimestamp {
  return r.readInt64() as PgTimestamp;
}

/**
 * TupleData (Int16 column count, then a kind byte and, for 't' and 'b', an
 * Int32 length and the bytes). Exported because spilled streamed transactions
 * are stored in this same layout (changes/spill-codec.ts).
 */
export function readTuple(r: ByteReader): Tuple {
  const at = r.offset;
  const ncols = r.readInt16();
  if (ncols < 0) throw new DecodeError(`negative column count ${ncols} in TupleData`, at);
  // Each column takes at least its kind byte; checking up front keeps a corrupt count from allocating a huge array.
  if (ncols > r.remaining) throw new DecodeError(`TupleData claims ${ncols} columns but only ${r.remaining} bytes are left`, at);
  const values: TupleValue[] = new Array<TupleValue>(ncols);
  for (let i = 0; i < ncols; i++) {
    const kindAt = r.offset;
    const kind = r.readUint8();
    switch (kind) {
      case B.ColText:
        values[i] = { kind: 'text', value: r.readUtf8(r.readLength()) };
        break;
      case B.ColNull:
        values[i] = NULL_VALUE;
        break;
      case B.ColUnchanged:
        values[i] = UNCHANGED_VALUE;
        break;
      case B.ColBinary:
        values[i] = { kind: 'binary', value: r.readBytes(r.readLength()) };
        break;
      default:
        throw new DecodeError(`unknown TupleData column kind ${describeByte(kind)} (column ${i + 1} of ${ncols})`, kindAt);
    }
  }
  return values;
}

function readReplicaIdentity(r: ByteReader): ReplicaIdentity {
  const at = r.offset;
  const byte = r.readUint8();
  switch (byte) {
    case 0x64: return 'default'; // 'd'
    case 0x6e: return 'nothing'; // 'n'
    case 0x66: return 'full'; // 'f'
    case 0x69: return 'index'; // 'i'
    default: throw new DecodeError(`unknown replica identity ${describeByte(byte)}`, at);
  }
}

function readColumns(r: ByteReader): RelationColumn[] {
  const at = r.offset;
  const ncols = r.readInt16();
  if (ncols < 0) throw new DecodeError(`negative column count ${ncols} in Relation`, at);
  // A column is at least flags + NUL + two Int32s.
  if (ncols * 10 > r.remaining) throw new DecodeError(`Relation claims ${ncols} columns but only ${r.remaining} bytes are left`, at);
  const columns: RelationColumn[] = new Array<RelationColumn>(ncols);
  for (let i = 0; i < ncols; i++) {
    const flags = r.readUint8();
    const name = r.readCString();
    const typeOid = r.readUint32();
    const typeMod = r.readInt32();
    columns[i] = { name, isKey: (flags & COLUMN_IS_KEY) !== 0, typeOid, typeMod };
  }
  return columns;
}

/** Inside a streamed chunk, data messages carry the xid of the (sub)transaction first. */
function readStreamXid(r: ByteReader, inStream: boolean): number | undefined {
  return inStream ? r.readUint32() : undefined;
}

function decodeUpdate(r: ByteReader, xid: number | undefined): UpdateMessage {
  const relationOid = r.readUint32();
  let markerAt = r.offset;
  let marker = r.readUint8();
  let oldKind: 'key' | 'full' | undefined;
  let oldTuple: Tuple | undefined;
  if (marker === B.TupleKey || marker === B.TupleOld) {
    oldKind = marker === B.TupleKey ? 'key' : 'full';
    oldTuple = readTuple(r);
    markerAt = r.offset;
    marker = r.readUint8();
  }
  if (marker !== B.TupleNew) {
    throw new DecodeError(`expected 'N' (new tuple) in Update, got ${describeByte(marker)}`, markerAt);
  }
  const newTuple = readTuple(r);
  return { tag: 'update', xid, relationOid, oldKind, oldTuple, newTuple };
}

function decodeDelete(r: ByteReader, xid: number | undefined): DeleteMessage {
  const relationOid = r.readUint32();
  const markerAt = r.offset;
  const marker = r.readUint8();
  if (marker !== B.TupleKey && marker !== B.TupleOld) {
    throw new DecodeError(`expected 'K' or 'O' (old tuple) in Delete, got ${describeByte(marker)}`, markerAt);
  }
  const oldTuple = readTuple(r);
  return { tag: 'delete', xid, relationOid, oldKind: marker === B.TupleKey ? 'key' : 'full', oldTuple };
}

function decodeWith(r: ByteReader, inStream: boolean, parallelStreaming: boolean): PgoutputMessage {
  if (r.length === 0) throw new DecodeError('empty message', 0);
  const tag = r.readUint8();
  let message: PgoutputMessage;
  switch (tag) {
    case B.Insert: {
      const xid = readStreamXid(r, inStream);
      const relationOid = r.readUint32();
      const markerAt = r.offset;
      const marker = r.readUint8();
      if (marker !== B.TupleNew) throw new DecodeError(`expected 'N' (new tuple) in Insert, got ${describeByte(marker)}`, markerAt);
      message = { tag: 'insert', xid, relationOid, newTuple: readTuple(r) };
      break;
    }
    case B.Update:
      message = decodeUpdate(r, readStreamXid(r, inStream));
      break;
    case B.Delete:
      message = decodeDelete(r, readStreamXid(r, inStream));
      break;
    case B.Begin: {
      const finalLsn = r.readLsn();
      const commitTime = readTimestamp(r);
      message = { tag: 'begin', finalLsn, commitTime, xid: r.readUint32() };
      break;
    }
    case B.Commit: {
      const flags = r.readUint8();
      const commitLsn = r.readLsn();
      const endLsn = r.readLsn();
      message = { tag: 'commit', flags, commitLsn, endLsn, commitTime: readTimestamp(r) };
      break;
    }
    case B.Origin: {
      const originLsn = r.readLsn();
      message = { tag: 'origin', originLsn, originName: r.readCString() };
      break;
    }
    case B.Relation: {
      const xid = readStreamXid(r, inStream);
      const relationOid = r.readUint32();
      // pg_catalog is sent as an empty schema name (logicalrep_write_namespace).
      const schema = r.readCString();
      const name = r.readCString();
      const replicaIdentity = readReplicaIdentity(r);
      message = { tag: 'relation', xid, relationOid, schema, name, replicaIdentity, columns: readColumns(r) };
      break;
    }
    case B.Type: {
      const xid = readStreamXid(r, inStream);
      const typeOid = r.readUint32();
      const schema = r.readCString();
      message = { tag: 'type', xid, typeOid, schema, name: r.readCString() };
      break;
    }
    case B.Truncate: {
      const xid = readStreamXid(r, inStream);
      const countAt = r.offset;
      const count = r.readInt32();
      const options = r.readUint8();
      if (count < 0) throw new DecodeError(`negative relation count ${count} in Truncate`, countAt);
      if (count * 4 > r.remaining) throw new DecodeError(`Truncate claims ${count} relations but only ${r.remaining} bytes are left`, countAt);
      const relationOids: number[] = new Array<number>(count);
      for (let i = 0; i < count; i++) relationOids[i] = r.readUint32();
      message = {
        tag: 'truncate', xid,
        cascade: (options & TRUNCATE_CASCADE) !== 0,
        restartIdentity: (options & TRUNCATE_RESTART_SEQS) !== 0,
        relationOids,
      };
      break;
    }
    case B.Message: {
      const xid = readStreamXid(r, inStream);
      const flags = r.readUint8();
      const lsn = r.readLsn();
      const prefix = r.readCString();
      const content = r.readBytes(r.readLength());
      message = { tag: 'message', xid, transactional: (flags & MESSAGE_TRANSACTIONAL) !== 0, lsn, prefix, content };
      break;
    }
    case B.StreamStart: {
      const xid = r.readUint32();
      message = { tag: 'stream_start', xid, firstSegment: r.readUint8() !== 0 };
      break;
    }
    case B.StreamStop:
      message = { tag: 'stream_stop' };
      break;
    case B.StreamCommit: {
      const xid = r.readUint32();
      const flags = r.readUint8();
      const commitLsn = r.readLsn();
      const endLsn = r.readLsn();
      message = { tag: 'stream_commit', xid, flags, commitLsn, endLsn, commitTime: readTimestamp(r) };
      break;
    }
    case B.StreamAbort: {
      const xid = r.readUint32();
      const subxid = r.readUint32();
      // The abort LSN/time are only written with streaming = parallel (PostgreSQL 16+,
      // pgoutput_stream_abort). Accept them whenever present so a caller that guessed
      // the mode wrong still decodes; demand them when parallel mode was negotiated.
      if (parallelStreaming || r.remaining > 0) {
        const abortLsn = r.readLsn();
        message = { tag: 'stream_abort', xid, subxid, abortLsn, abortTime: readTimestamp(r) };
      } else {
        message = { tag: 'stream_abort', xid, subxid, abortLsn: undefined, abortTime: undefined };
      }
      break;
    }
    case B.BeginPrepare: {
      const prepareLsn = r.readLsn();
      const endLsn = r.readLsn();
      const prepareTime = readTimestamp(r);
      const xid = r.readUint32();
      message = { tag: 'begin_prepare', prepareLsn, endLsn, prepareTime, xid, gid: r.readCString() };
      break;
    }
    case B.Prepare:
    case B.StreamPrepare: {
      const flags = r.readUint8();
      const prepareLsn = r.readLsn();
      const endLsn = r.readLsn();
      const prepareTime = readTimestamp(r);
      const xid = r.readUint32();
      const gid = r.readCString();
      message = { tag: tag === B.Prepare ? 'prepare' : 'stream_prepare', flags, prepareLsn, endLsn, prepareTime, xid, gid };
      break;
    }
    case B.CommitPrepared: {
      const flags = r.readUint8();
      const commitLsn = r.readLsn();
      const endLsn = r.readLsn();
      const commitTime = readTimestamp(r);
      const xid = r.readUint32();
      message = { tag: 'commit_prepared', flags, commitLsn, endLsn, commitTime, xid, gid: r.readCString() };
      break;
    }
    case B.RollbackPrepared: {
      const flags = r.readUint8();
      const prepareEndLsn = r.readLsn();
      const rollbackEndLsn = r.readLsn();
      const prepareTime = readTimestamp(r);
      const rollbackTime = readTimestamp(r);
      const xid = r.readUint32();
      message = { tag: 'rollback_prepared', flags, prepareEndLsn, rollbackEndLsn, prepareTime, rollbackTime, xid, gid: r.readCString() };
      break;
    }
    default:
      throw new DecodeError(`unknown pgoutput message tag ${describeByte(tag)}`, 0);
  }
  r.expectEnd(message.tag);
  return message;
}

// Decoding is synchronous and never re-enters, so one reader can be reused for every
// message instead of allocating a cursor per row. Views it hands out (binary values,
// Message content) point into the payload, not into the reader.
const sharedReader = new ByteReader();

/**
 * Decodes one pgoutput message (the payload of an XLogData frame).
 *
 * `inStream` must be true between Stream Start and Stream Stop: there Relation,
 * Type, Insert, Update, Delete, Truncate and Message carry a leading xid.
 * Prefer `PgoutputDecoder`, which tracks that itself.
 */
export function decodePgoutput(payload: Uint8Array, inStream: boolean, options: { readonly parallelStreaming?: boolean } = {}): PgoutputMessage {
  sharedReader.reset(payload);
  return decodeWith(sharedReader, inStream, options.parallelStreaming === true);
}

/** Messages pgoutput never sends between Stream Start and Stream Stop (proto.c asserts !in_streaming for them). */
const OUTSIDE_STREAM_ONLY: ReadonlySet<PgoutputMessage['tag']> = new Set([
  'begin', 'commit', 'begin_prepare', 'prepare', 'commit_prepared', 'rollback_prepared',
  'stream_start', 'stream_commit', 'stream_abort', 'stream_prepare',
]);

/**
 * Stateful decoder for one replication session: knows whether it is inside a
 * streamed chunk, which decides whether data messages carry an xid. Losing
 * track of that would shift every field by four bytes, so out-of-place stream
 * control messages are rejected rather than guessed around.
 */
export class PgoutputDecoder {
  readonly protocolVersion: 1 | 2 | 3 | 4;
  readonly parallelStreaming: boolean;
  readonly #reader = new ByteReader();
  #inStream = false;

  constructor(options: PgoutputDecoderOptions = { protocolVersion: 1 }) {
    const version: number = options.protocolVersion;
    if (version !== 1 && version !== 2 && version !== 3 && version !== 4) {
      throw new RangeError(`unsupported pgoutput protocol version ${version}`);
    }
    if (options.parallelStreaming === true && version < 4) {
      throw new RangeError('parallel streaming needs pgoutput protocol version 4');
    }
    this.protocolVersion = options.protocolVersion;
    this.parallelStreaming = options.parallelStreaming === true;
  }

  /** True between Stream Start and Stream Stop. */
  get inStream(): boolean {
    return this.#inStream;
  }

  /** Forgets stream state, e.g. after the replication connection was re-established. */
  reset(): void {
    this.#inStream = false;
  }

  decode(payload: Uint8Array): PgoutputMessage {
    const r = this.#reader;
    r.reset(payload);
    const message = decodeWith(r, this.#inStream, this.parallelStreaming);
    const tag = message.tag;
    if (this.#inStream) {
      if (tag === 'stream_stop') this.#inStream = false;
      else if (OUTSIDE_STREAM_ONLY.has(tag)) throw new DecodeError(`${tag} message inside a streamed chunk (Stream Start without Stream Stop)`, 0);
    } else if (tag === 'stream_start') {
      this.#inStream = true;
    } else if (tag === 'stream_stop') {
      throw new DecodeError('Stream Stop without a preceding Stream Start', 0);
    }
    return message;
  }
}
