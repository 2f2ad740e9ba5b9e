/**
 * A bounds-checked big-endian cursor over one protocol message.
 *
 * This sits on the replication hot path (every column of every row goes
 * through it), so it reads bytes by index instead of going through DataView or
 * Buffer's own checked readers, and it never copies: `readBytes` returns a view
 * into the message. Every read checks the remaining length first and raises
 * `DecodeError` with the offset of the read that did not fit, so no RangeError
 * (or anything else) can escape on malformed input.
 *
 * Offsets are relative to the start of the message (byte 0 is the tag byte).
 */
import { Buffer } from 'node:buffer';
import { DecodeError } from '../core/errors.js';
import type { Lsn } from '../core/lsn.js';

/**
 * `utf8Slice` is the binding behind `buf.toString('utf8', a, b)`; calling it
 * directly skips the encoding lookup and argument normalisation, which is
 * measurable at several million column values per second. It is not in the
 * public typings, hence the feature test and the fallback.
 */
interface Utf8Sliceable { utf8Slice(start: number, end: number): string }
const HAS_UTF8_SLICE = typeof (Buffer.prototype as unknown as Partial<Utf8Sliceable>).utf8Slice === 'function';

/**
 * Below this length an all-ASCII string is built in JS: crossing into C++ costs
 * more than the whole decode for a short value such as an integer column.
 */
const SHORT_STRING = 8;

const EMPTY = Buffer.alloc(0);

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

export class ByteReader {
  private buf: Buffer;
  private pos: number;
  private end: number;

  constructor(data: Uint8Array = EMPTY) {
    this.buf = asBuffer(data);
    this.pos = 0;
    this.end = this.buf.length;
  }

  /** Points the reader at a new message, so one reader can serve a whole stream without allocating. */
  reset(data: Uint8Array): void {
    this.buf = asBuffer(data);
    this.pos = 0;
    this.end = this.buf.length;
  }

  /** Offset of the next byte to read. */
  get offset(): number {
    return this.pos;
  }

  get length(): number {
    return this.end;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  /** Throws unless `n` more bytes are available; `what` names the field for the message. */
  need(n: number, what: string): void {
    if (this.end - this.pos < n) this.truncated(n, what);
  }

  readUint8(): number {
    if (this.pos >= this.end) this.truncated(1, 'byte');
    return this.buf[this.pos++]!;
  }

  readInt16(): number {
    if (this.end - this.pos < 2) this.truncated(2, 'Int16');
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 2;
    return ((b[p]! << 24) | (b[p + 1]! << 16)) >> 16;
  }

  readUint16(): number {
    if (this.end - this.pos < 2) this.truncated(2, 'Int16');
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 2;
    return (b[p]! << 8) | b[p + 1]!;
  }

  readInt32(): number {
    if (this.end - this.pos < 4) this.truncated(4, 'Int32');
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 4;
    return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
  }

  /** OIDs and xids are unsigned 32-bit on the wire (PostgreSQL reads them with pq_getmsgint). */
  readUint32(): number {
    if (this.end - this.pos < 4) this.truncated(4, 'Int32');
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 4;
    return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
  }

  /** Signed 64-bit (timestamps). */
  readInt64(): bigint {
    if (this.end - this.pos < 8) this.truncated(8, 'Int64');
    const hi = this.readInt32();
    const lo = this.readUint32();
    // One BigInt allocation instead of three while the value fits a double exactly (|v| < 2^53).
    if (hi >= -0x200000 && hi < 0x200000) return BigInt(hi * 0x1_0000_0000 + lo);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Unsigned 64-bit. */
  readUint64(): bigint {
    if (this.end - this.pos < 8) this.truncated(8, 'Int64');
    const hi = this.readUint32();
    const lo = this.readUint32();
    if (hi < 0x200000) return BigInt(hi * 0x1_0000_0000 + lo);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** XLogRecPtr is an unsigned 64-bit integer, so any 8 bytes are a valid Lsn. */
  readLsn(): Lsn {
    return this.readUint64() as Lsn;
  }

  /** A NUL-terminated UTF-8 string (identifiers, prefixes, GIDs); consumes the NUL. */
  readCString(): string {
    const b = this.buf;
    const start = this.pos;
    const end = this.end;
    let i = start;
    while (i < end && b[i] !== 0) i++;
    if (i >= end) throw new DecodeError('string is missing its NUL terminator', start);
    this.pos = i + 1;
    return this.decodeUtf8(start, i);
  }

  /**
   * An Int32 byte count as used by TupleData and Message: must be non-negative
   * and must fit in what is left. Reported at the offset of the count itself.
   */
  readLength(): number {
    const at = this.pos;
    const n = this.readInt32();
    if (n < 0) throw new DecodeError(`negative length ${n}`, at);
    if (n > this.end - this.pos) throw new DecodeError(`length ${n} runs past the end of the message (${this.end - this.pos} bytes left)`, at);
    return n;
  }

  /** `n` bytes decoded as UTF-8 (invalid sequences become U+FFFD, as Buffer does). */
  readUtf8(n: number): string {
    if (n < 0 || this.end - this.pos < n) this.truncated(n, 'text');
    const start = this.pos;
    this.pos = start + n;
    return this.decodeUtf8(start, start + n);
  }

  /** A view of the next `n` bytes, not a copy: it shares memory with the message. */
  readBytes(n: number): Uint8Array {
    if (n < 0 || this.end - this.pos < n) this.truncated(n, 'bytes');
    const start = this.pos;
    this.pos = start + n;
    // A plain Uint8Array (not a Buffer subarray) so callers see the declared type whatever the input was.
    return new Uint8Array(this.buf.buffer, this.buf.byteOffset + start, n);
  }

  /** Every message has a fixed end; bytes past it mean we misread the layout. */
  expectEnd(what: string): void {
    if (this.pos !== this.end) {
      throw new DecodeError(`${this.end - this.pos} unexpected trailing byte(s) after ${what}`, this.pos);
    }
  }

  private decodeUtf8(start: number, end: number): string {
    const b = this.buf;
    const n = end - start;
    if (n === 0) return '';
    if (n <= SHORT_STRING) {
      let s = '';
      for (let i = start; i < end; i++) {
        const c = b[i]!;
        if (c > 0x7f) return this.nativeUtf8(start, end);
        s += String.fromCharCode(c);
      }
      return s;
    }
    return this.nativeUtf8(start, end);
  }

  private nativeUtf8(start: number, end: number): string {
    return HAS_UTF8_SLICE ? (this.buf as unknown as Utf8Sliceable).utf8Slice(start, end) : this.buf.toString('utf8', start, end);
  }

  private truncated(n: number, what: string): never {
    throw new DecodeError(`message truncated: needed ${n} byte(s) for ${what}, ${this.end - this.pos} left`, this.pos);
  }
}
