/**
 * The streaming replication sub-protocol frames carried in CopyData during
 * START_REPLICATION: https://www.postgresql.org/docs/current/protocol-replication.html
 * (see "XLogData", "Primary keepalive message" and "Standby status update").
 */
import { Buffer } from 'node:buffer';
import { DecodeError } from '../core/errors.js';
import type { Lsn } from '../core/lsn.js';
import { ByteReader } from './byte-reader.js';
import type { PgTimestamp, ReplicationFrame } from './messages.js';

const XLOG_DATA = 0x77; // 'w'
const KEEPALIVE = 0x6b; // 'k'
const STANDBY_STATUS_UPDATE = 0x72; // 'r'

/** 'w' + walStart + walEnd + sendTime. */
const XLOG_HEADER_BYTES = 25;
export const STANDBY_STATUS_UPDATE_BYTES = 34;

const reader = new ByteReader();

/** Decodes one CopyData payload from the server. The XLogData payload is a view, not a copy. */
export function decodeReplicationFrame(data: Uint8Array): ReplicationFrame {
  const r = reader;
  r.reset(data);
  if (r.length === 0) throw new DecodeError('empty replication frame', 0);
  const tag = r.readUint8();
  if (tag === XLOG_DATA) {
    const walStart = r.readLsn();
    const walEnd = r.readLsn();
    const sendTime = r.readInt64() as PgTimestamp;
    return { tag: 'xlog_data', walStart, walEnd, sendTime, payload: data.subarray(XLOG_HEADER_BYTES) };
  }
  if (tag === KEEPALIVE) {
    const walEnd = r.readLsn();
    const sendTime = r.readInt64() as PgTimestamp;
    const replyRequested = r.readUint8() !== 0;
    r.expectEnd('primary keepalive');
    return { tag: 'keepalive', walEnd, sendTime, replyRequested };
  }
  throw new DecodeError(`unknown replication frame tag 0x${tag.toString(16).padStart(2, '0')}`, 0);
}

/**
 * Standby status update ('r'). `written`/`flushed`/`applied` are what the
 * server may consider received, durable and applied; the slot's
 * confirmed_flush_lsn follows `flushed`, so it must never run ahead of what the
 * target has durably committed. `replyRequested` asks for an immediate keepalive.
 */
export function encodeStandbyStatusUpdate(written: Lsn, flushed: Lsn, applied: Lsn, now: PgTimestamp, replyRequested: boolean): Buffer {
  const out = Buffer.allocUnsafe(STANDBY_STATUS_UPDATE_BYTES);
  out[0] = STANDBY_STATUS_UPDATE;
  out.writeBigUInt64BE(written, 1);
  out.writeBigUInt64BE(flushed, 9);
  out.writeBigUInt64BE(applied, 17);
  out.writeBigInt64BE(now, 25);
  out[33] = replyRequested ? 1 : 0;
  return out;
}
