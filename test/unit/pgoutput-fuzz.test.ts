/**
 * Property tests for the pgoutput decoder and replication frames:
 *  - nothing but DecodeError (with an in-range offset) ever escapes, whatever the bytes;
 *  - encode → decode is the identity for every valid message, alone and in
 *    streamed sequences decoded by the stateful PgoutputDecoder.
 * The encoder here is written from the protocol docs, independently of the decoder.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { decodePgoutput, PgoutputDecoder } from '../../src/protocol/pgoutput-decoder.js';
import { decodeReplicationFrame, encodeStandbyStatusUpdate } from '../../src/protocol/replication-frames.js';
import { DecodeError } from '../../src/core/errors.js';
import type { Lsn } from '../../src/core/lsn.js';
import type { PgoutputMessage, PgTimestamp, RelationColumn, ReplicaIdentity, Tuple, TupleValue } from '../../src/protocol/messages.js';

// ---------------------------------------------------------------------------
// Encoder (test-only)

class Out {
  private readonly bytes: number[] = [];
  u8(v: number): this { this.bytes.push(v & 0xff); return this; }
  ch(c: string): this { return this.u8(c.charCodeAt(0)); }
  i16(v: number): this { return this.u8(v >> 8).u8(v); }
  i32(v: number): this { return this.u8(v >>> 24).u8(v >>> 16).u8(v >>> 8).u8(v); }
  i64(v: bigint): this {
    const u = BigInt.asUintN(64, v);
    return this.i32(Number(u >> 32n)).i32(Number(u & 0xffff_ffffn));
  }
  raw(b: Uint8Array): this { for (const x of b) this.bytes.push(x); return this; }
  cstr(s: string): this { return this.raw(Buffer.from(s, 'utf8')).u8(0); }
  xid(xid: number | undefined): this { return xid === undefined ? this : this.i32(xid); }
  tuple(t: Tuple): this {
    this.i16(t.length);
    for (const v of t) {
      if (v.kind === 'null') this.ch('n');
      else if (v.kind === 'unchanged') this.ch('u');
      else if (v.kind === 'text') { const b = Buffer.from(v.value, 'utf8'); this.ch('t').i32(b.length).raw(b); }
      else this.ch('b').i32(v.value.length).raw(v.value);
    }
    return this;
  }
  build(): Buffer { return Buffer.from(this.bytes); }
}

const IDENTITY_BYTE: Readonly<Record<ReplicaIdentity, string>> = { default: 'd', nothing: 'n', full: 'f', index: 'i' };

function encode(m: PgoutputMessage): Buffer {
  const o = new Out();
  switch (m.tag) {
    case 'begin': return o.ch('B').i64(m.finalLsn).i64(m.commitTime).i32(m.xid).build();
    case 'commit': return o.ch('C').u8(m.flags).i64(m.commitLsn).i64(m.endLsn).i64(m.commitTime).build();
    case 'origin': return o.ch('O').i64(m.originLsn).cstr(m.originName).build();
    case 'relation':
      o.ch('R').xid(m.xid).i32(m.relationOid).cstr(m.schema).cstr(m.name).ch(IDENTITY_BYTE[m.replicaIdentity]).i16(m.columns.length);
      for (const c of m.columns) o.u8(c.isKey ? 1 : 0).cstr(c.name).i32(c.typeOid).i32(c.typeMod);
      return o.build();
    case 'type': return o.ch('Y').xid(m.xid).i32(m.typeOid).cstr(m.schema).cstr(m.name).build();
    case 'insert': return o.ch('I').xid(m.xid).i32(m.relationOid).ch('N').tuple(m.newTuple).build();
    case 'update':
      o.ch('U').xid(m.xid).i32(m.relationOid);
      if (m.oldTuple !== undefined) o.ch(m.oldKind === 'full' ? 'O' : 'K').tuple(m.oldTuple);
      return o.ch('N').tuple(m.newTuple).build();
    case 'delete': return o.ch('D').xid(m.xid).i32(m.relationOid).ch(m.oldKind === 'full' ? 'O' : 'K').tuple(m.oldTuple).build();
    case 'truncate':
      o.ch('T').xid(m.xid).i32(m.relationOids.length).u8((m.cascade ? 1 : 0) | (m.restartIdentity ? 2 : 0));
      for (const oid of m.relationOids) o.i32(oid);
      return o.build();
    case 'message': return o.ch('M').xid(m.xid).u8(m.transactional ? 1 : 0).i64(m.lsn).cstr(m.prefix).i32(m.content.length).raw(m.content).build();
    case 'stream_start': return o.ch('S').i32(m.xid).u8(m.firstSegment ? 1 : 0).build();
    case 'stream_stop': return o.ch('E').build();
    case 'stream_commit': return o.ch('c').i32(m.xid).u8(m.flags).i64(m.commitLsn).i64(m.endLsn).i64(m.commitTime).build();
    case 'stream_abort':
      o.ch('A').i32(m.xid).i32(m.subxid);
      if (m.abortLsn !== undefined && m.abortTime !== undefined) o.i64(m.abortLsn).i64(m.abortTime);
      return o.build();
    case 'begin_prepare': return o.ch('b').i64(m.prepareLsn).i64(m.endLsn).i64(m.prepareTime).i32(m.xid).cstr(m.gid).build();
    case 'prepare': return o.ch('P').u8(m.flags).i64(m.prepareLsn).i64(m.endLsn).i64(m.prepareTime).i32(m.xid).cstr(m.gid).build();
    case 'stream_prepare': return o.ch('p').u8(m.flags).i64(m.prepareLsn).i64(m.endLsn).i64(m.prepareTime).i32(m.xid).cstr(m.gid).build();
    case 'commit_prepared': return o.ch('K').u8(m.flags).i64(m.commitLsn).i64(m.endLsn).i64(m.commitTime).i32(m.xid).cstr(m.gid).build();
    case 'rollback_prepared':
      return o.ch('r').u8(m.flags).i64(m.prepareEndLsn).i64(m.rollbackEndLsn).i64(m.prepareTime).i64(m.rollbackTime).i32(m.xid).cstr(m.gid).build();
  }
}

// ---------------------------------------------------------------------------
// Generators

/** fast-check 4 builds records with a null prototype by default; the decoder returns plain objects. */
function rec<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true });
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const i32 = fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
const u8 = fc.integer({ min: 0, max: 255 });
const lsnArb: fc.Arbitrary<Lsn> = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => v as Lsn);
const tsArb: fc.Arbitrary<PgTimestamp> = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v) => v as PgTimestamp);
/** Any Unicode text (no lone surrogates: they cannot be UTF-8 encoded). */
const anyText = fc.string({ unit: 'binary', maxLength: 24 });
/** Identifiers and other C strings cannot contain NUL. */
const cstring = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 16 }).map((s) => s.replace(/\0/g, '')),
  fc.constantFrom('', 'public', 'Mixed Case', 'with "quotes"', 'ñ名🐘', 'a b'),
);
const bytes = fc.uint8Array({ maxLength: 24 });

const tupleValue: fc.Arbitrary<TupleValue> = fc.oneof(
  fc.constant<TupleValue>({ kind: 'null' }),
  fc.constant<TupleValue>({ kind: 'unchanged' }),
  anyText.map((value): TupleValue => ({ kind: 'text', value })),
  bytes.map((value): TupleValue => ({ kind: 'binary', value })),
);
const tuple: fc.Arbitrary<Tuple> = fc.array(tupleValue, { maxLength: 6 });
const column: fc.Arbitrary<RelationColumn> = rec({ name: cstring, isKey: fc.boolean(), typeOid: u32, typeMod: i32 });
const identity = fc.constantFrom<ReplicaIdentity>('default', 'nothing', 'full', 'index');

/** Messages that may appear inside a streamed chunk (xid set) or outside one (xid undefined). */
function dataMessage(inStream: boolean): fc.Arbitrary<PgoutputMessage> {
  const xid: fc.Arbitrary<number | undefined> = inStream ? u32 : fc.constant(undefined);
  return fc.oneof(
    rec({ tag: fc.constant('relation' as const), xid, relationOid: u32, schema: cstring, name: cstring, replicaIdentity: identity, columns: fc.array(column, { maxLength: 5 }) }),
    rec({ tag: fc.constant('type' as const), xid, typeOid: u32, schema: cstring, name: cstring }),
    rec({ tag: fc.constant('insert' as const), xid, relationOid: u32, newTuple: tuple }),
    fc.oneof(
      rec({ tag: fc.constant('update' as const), xid, relationOid: u32, oldKind: fc.constant(undefined), oldTuple: fc.constant(undefined), newTuple: tuple }),
      rec({ tag: fc.constant('update' as const), xid, relationOid: u32, oldKind: fc.constantFrom('key' as const, 'full' as const), oldTuple: tuple, newTuple: tuple }),
    ),
    rec({ tag: fc.constant('delete' as const), xid, relationOid: u32, oldKind: fc.constantFrom('key' as const, 'full' as const), oldTuple: tuple }),
    rec({ tag: fc.constant('truncate' as const), xid, cascade: fc.boolean(), restartIdentity: fc.boolean(), relationOids: fc.array(u32, { maxLength: 5 }) }),
    rec({ tag: fc.constant('message' as const), xid, transactional: fc.boolean(), lsn: lsnArb, prefix: cstring, content: bytes }),
    rec({ tag: fc.constant('origin' as const), originLsn: lsnArb, originName: cstring }),
  );
}

/** Messages only sent outside streamed chunks. */
const controlMessage: fc.Arbitrary<PgoutputMessage> = fc.oneof(
  rec({ tag: fc.constant('begin' as const), finalLsn: lsnArb, commitTime: tsArb, xid: u32 }),
  rec({ tag: fc.constant('commit' as const), flags: u8, commitLsn: lsnArb, endLsn: lsnArb, commitTime: tsArb }),
  rec({ tag: fc.constant('stream_commit' as const), xid: u32, flags: u8, commitLsn: lsnArb, endLsn: lsnArb, commitTime: tsArb }),
  rec({ tag: fc.constant('stream_abort' as const), xid: u32, subxid: u32, abortLsn: fc.constant(undefined), abortTime: fc.constant(undefined) }),
  rec({ tag: fc.constant('stream_abort' as const), xid: u32, subxid: u32, abortLsn: lsnArb, abortTime: tsArb }),
  rec({ tag: fc.constant('begin_prepare' as const), prepareLsn: lsnArb, endLsn: lsnArb, prepareTime: tsArb, xid: u32, gid: cstring }),
  rec({ tag: fc.constant('prepare' as const), flags: u8, prepareLsn: lsnArb, endLsn: lsnArb, prepareTime: tsArb, xid: u32, gid: cstring }),
  rec({ tag: fc.constant('stream_prepare' as const), flags: u8, prepareLsn: lsnArb, endLsn: lsnArb, prepareTime: tsArb, xid: u32, gid: cstring }),
  rec({ tag: fc.constant('commit_prepared' as const), flags: u8, commitLsn: lsnArb, endLsn: lsnArb, commitTime: tsArb, xid: u32, gid: cstring }),
  rec({ tag: fc.constant('rollback_prepared' as const), flags: u8, prepareEndLsn: lsnArb, rollbackEndLsn: lsnArb, prepareTime: tsArb, rollbackTime: tsArb, xid: u32, gid: cstring }),
  rec({ tag: fc.constant('stream_start' as const), xid: u32, firstSegment: fc.boolean() }),
  fc.constant<PgoutputMessage>({ tag: 'stream_stop' }),
);

/** A valid message together with the stream state it must be decoded in. */
const anyMessage: fc.Arbitrary<{ readonly message: PgoutputMessage; readonly inStream: boolean }> = fc.oneof(
  controlMessage.map((message) => ({ message, inStream: false })),
  dataMessage(false).map((message) => ({ message, inStream: false })),
  dataMessage(true).map((message) => ({ message, inStream: true })),
);

// ---------------------------------------------------------------------------
// Properties

function expectOnlyDecodeError(fn: () => unknown, length: number): void {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof DecodeError, `escaped a non-DecodeError: ${error instanceof Error ? error.stack : String(error)}`);
    assert.equal(typeof error.offset, 'number');
    assert.ok(Number.isInteger(error.offset) && error.offset >= 0 && error.offset <= length, `offset ${error.offset} outside [0, ${length}]`);
  }
}

function decodeEverywhere(bytes: Uint8Array): void {
  expectOnlyDecodeError(() => decodePgoutput(bytes, false), bytes.length);
  expectOnlyDecodeError(() => decodePgoutput(bytes, true), bytes.length);
  expectOnlyDecodeError(() => decodePgoutput(bytes, false, { parallelStreaming: true }), bytes.length);
  expectOnlyDecodeError(() => decodeReplicationFrame(bytes), bytes.length);
}

const TAGS = [...'BCORYIUDTMSEcAbPKrp'].map((c) => c.charCodeAt(0));

/** A valid encoded message, damaged in one of several ways. */
const damaged = fc.tuple(anyMessage, fc.nat(), fc.nat(), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 3 })).map(([{ message, inStream }, a, b, bit, how]) => {
  const valid = encode(message);
  let out: Buffer;
  if (how === 0) out = valid.subarray(0, a % (valid.length + 1)); // truncation
  else if (how === 1) { out = Buffer.from(valid); const i = a % out.length; out[i] = out[i]! ^ (1 << bit); } // bit flip
  else if (how === 2) { out = Buffer.from(valid); out[a % out.length] = b & 0xff; } // byte overwrite
  else out = Buffer.concat([valid, Buffer.from([b & 0xff])]); // trailing byte
  return { bytes: out, inStream };
});

describe('pgoutput fuzz: only DecodeError escapes', () => {
  it('random byte arrays', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => decodeEverywhere(bytes)), { numRuns: 3000 });
  });

  it('random bytes behind a valid tag', () => {
    fc.assert(fc.property(fc.constantFrom(...TAGS), fc.uint8Array({ maxLength: 48 }), (tag, rest) => {
      decodeEverywhere(Buffer.concat([Buffer.from([tag]), rest]));
    }), { numRuns: 3000 });
  });

  it('truncations, bit flips, overwrites and trailing bytes of valid messages', () => {
    fc.assert(fc.property(damaged, ({ bytes, inStream }) => {
      expectOnlyDecodeError(() => decodePgoutput(bytes, inStream), bytes.length);
      expectOnlyDecodeError(() => decodePgoutput(bytes, !inStream), bytes.length);
    }), { numRuns: 3000 });
  });

  it('every strict prefix of a valid message fails with DecodeError', () => {
    fc.assert(fc.property(anyMessage, ({ message, inStream }) => {
      const valid = encode(message);
      for (let n = 0; n < valid.length; n++) {
        const prefix = valid.subarray(0, n);
        assert.throws(() => decodePgoutput(prefix, inStream, { parallelStreaming: message.tag === 'stream_abort' && message.abortLsn !== undefined }), (error: unknown) => {
          return error instanceof DecodeError && error.offset >= 0 && error.offset <= n;
        });
      }
    }), { numRuns: 400 });
  });

  it('the stateful decoder survives random sequences of damaged and valid messages', () => {
    fc.assert(fc.property(fc.array(fc.oneof(damaged.map((d) => d.bytes), anyMessage.map((m) => encode(m.message))), { maxLength: 20 }), (sequence) => {
      const decoder = new PgoutputDecoder({ protocolVersion: 4, parallelStreaming: false });
      for (const bytes of sequence) expectOnlyDecodeError(() => decoder.decode(bytes), bytes.length);
    }), { numRuns: 300 });
  });
});

describe('pgoutput fuzz: encode → decode round trip', () => {
  it('every valid message decodes to itself', () => {
    fc.assert(fc.property(anyMessage, ({ message, inStream }) => {
      assert.deepEqual(decodePgoutput(encode(message), inStream), message);
    }), { numRuns: 3000 });
  });

  it('streamed and plain transactions decode to themselves through PgoutputDecoder', () => {
    const chunk = fc.tuple(rec({ tag: fc.constant('stream_start' as const), xid: u32, firstSegment: fc.boolean() }), fc.array(dataMessage(true), { maxLength: 6 }))
      .map(([start, inside]): PgoutputMessage[] => [start, ...inside, { tag: 'stream_stop' }]);
    const outside = fc.oneof(controlMessage.filter((m) => m.tag !== 'stream_start' && m.tag !== 'stream_stop'), dataMessage(false)).map((m) => [m]);
    fc.assert(fc.property(fc.array(fc.oneof(chunk, outside), { maxLength: 8 }), fc.boolean(), (groups, parallel) => {
      const messages = groups.flat().filter((m) => !(parallel && m.tag === 'stream_abort' && m.abortLsn === undefined));
      const decoder = new PgoutputDecoder({ protocolVersion: 4, parallelStreaming: parallel });
      for (const m of messages) assert.deepEqual(decoder.decode(encode(m)), m);
      assert.equal(decoder.inStream, false);
    }), { numRuns: 500 });
  });

  it('replication frames round-trip', () => {
    fc.assert(fc.property(lsnArb, lsnArb, tsArb, fc.boolean(), bytes, (walStart, walEnd, sendTime, reply, payload) => {
      const xlog = new Out().ch('w').i64(walStart).i64(walEnd).i64(sendTime).raw(payload).build();
      const decoded = decodeReplicationFrame(xlog);
      assert.equal(decoded.tag, 'xlog_data');
      assert.deepEqual({ ...decoded, payload: new Uint8Array(decoded.payload) }, { tag: 'xlog_data', walStart, walEnd, sendTime, payload });
      const keepalive = new Out().ch('k').i64(walEnd).i64(sendTime).u8(reply ? 1 : 0).build();
      assert.deepEqual(decodeReplicationFrame(keepalive), { tag: 'keepalive', walEnd, sendTime, replyRequested: reply });
    }), { numRuns: 1000 });
  });

  it('standby status updates carry their fields at fixed offsets', () => {
    fc.assert(fc.property(lsnArb, lsnArb, lsnArb, tsArb, fc.boolean(), (written, flushed, applied, now, reply) => {
      const out = encodeStandbyStatusUpdate(written, flushed, applied, now, reply);
      assert.equal(out.length, 34);
      assert.equal(out[0], 0x72);
      assert.equal(out.readBigUInt64BE(1), written);
      assert.equal(out.readBigUInt64BE(9), flushed);
      assert.equal(out.readBigUInt64BE(17), applied);
      assert.equal(out.readBigInt64BE(25), now);
      assert.equal(out[33], reply ? 1 : 0);
    }), { numRuns: 500 });
  });
});
