/**
 * Byte-level tests for the pgoutput decoder and the replication frames around it.
 * Every fixture is built byte by byte from the layouts in
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 * (and proto.c), independent of the decoder's own code.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { decodePgoutput, PgoutputDecoder } from '../../src/protocol/pgoutput-decoder.js';
import { decodeReplicationFrame, encodeStandbyStatusUpdate } from '../../src/protocol/replication-frames.js';
import { ByteReader } from '../../src/protocol/byte-reader.js';
import { DecodeError } from '../../src/core/errors.js';
import { lsn } from '../../src/core/lsn.js';
import type { PgoutputMessage, PgTimestamp, TupleValue } from '../../src/protocol/messages.js';

/** Tiny big-endian builder for fixtures. */
class Bytes {
  private readonly parts: number[] = [];
  u8(...values: number[]): this { for (const v of values) this.parts.push(v & 0xff); return this; }
  ch(c: string): this { return this.u8(c.charCodeAt(0)); }
  i16(v: number): this { return this.u8(v >> 8, v); }
  i32(v: number): this { return this.u8(v >>> 24, v >>> 16, v >>> 8, v); }
  i64(v: bigint): this {
    const u = BigInt.asUintN(64, v);
    return this.i32(Number(u >> 32n)).i32(Number(u & 0xffff_ffffn));
  }
  raw(bytes: Uint8Array | readonly number[]): this { for (const b of bytes) this.parts.push(b); return this; }
  cstr(s: string): this { return this.raw(Buffer.from(s, 'utf8')).u8(0); }
  text(s: string): this { const b = Buffer.from(s, 'utf8'); return this.ch('t').i32(b.length).raw(b); }
  bin(b: readonly number[]): this { return this.ch('b').i32(b.length).raw(b); }
  build(): Buffer { return Buffer.from(this.parts); }
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ts = (v: bigint): PgTimestamp => v as PgTimestamp;
const text = (value: string): TupleValue => ({ kind: 'text', value });
const NULL: TupleValue = { kind: 'null' };
const UNCHANGED: TupleValue = { kind: 'unchanged' };

function decodeError(fn: () => unknown, offset?: number, pattern?: RegExp): DecodeError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof DecodeError, `expected DecodeError, got ${String(caught)}`);
  if (offset !== undefined) assert.equal(caught.offset, offset, caught.message);
  if (pattern !== undefined) assert.match(caught.message, pattern);
  assert.equal(caught.code, 'DECODE_ERROR');
  return caught;
}

const XID = 0x0000_04d2; // 1234
const OID = 16_384;

describe('pgoutput transaction control messages', () => {
  it('decodes Begin from literal bytes', () => {
    // 'B', final LSN 0/16B374D8, commit time 2024-01-01T00:00:00Z = 757382400000000 µs, xid 1234
    const payload = hex('42 0000000016B374D8 0002B0D5D4E94000 000004D2');
    assert.deepEqual(decodePgoutput(payload, false), {
      tag: 'begin', finalLsn: lsn(0x16b374d8n), commitTime: ts(757_382_400_000_000n), xid: 1234,
    });
  });

  it('decodes Commit with LSNs above 2^32 and above 2^63', () => {
    const payload = new Bytes().ch('C').u8(0).i64(0x16_b374_d848n).i64(0xffff_ffff_ffff_fff0n).i64(-5n).build();
    assert.equal(payload.length, 26);
    assert.deepEqual(decodePgoutput(payload, false), {
      tag: 'commit', flags: 0, commitLsn: lsn(0x16_b374_d848n), endLsn: lsn(0xffff_ffff_ffff_fff0n), commitTime: ts(-5n),
    });
  });

  it('decodes Origin', () => {
    const payload = new Bytes().ch('O').i64(0x1_0000_0001n).cstr('pg_16390').build();
    assert.deepEqual(decodePgoutput(payload, false), { tag: 'origin', originLsn: lsn(0x1_0000_0001n), originName: 'pg_16390' });
  });

  it('decodes Begin Prepare, Prepare, Commit Prepared, Rollback Prepared and Stream Prepare', () => {
    const gid = 'pg_gid_16389_742 ü';
    assert.deepEqual(
      decodePgoutput(new Bytes().ch('b').i64(100n).i64(200n).i64(300n).i32(742).cstr(gid).build(), false),
      { tag: 'begin_prepare', prepareLsn: lsn(100n), endLsn: lsn(200n), prepareTime: ts(300n), xid: 742, gid },
    );
    assert.deepEqual(
      decodePgoutput(new Bytes().ch('P').u8(0).i64(100n).i64(200n).i64(300n).i32(742).cstr(gid).build(), false),
      { tag: 'prepare', flags: 0, prepareLsn: lsn(100n), endLsn: lsn(200n), prepareTime: ts(300n), xid: 742, gid },
    );
    assert.deepEqual(
      decodePgoutput(new Bytes().ch('K').u8(0).i64(400n).i64(500n).i64(600n).i32(742).cstr(gid).build(), false),
      { tag: 'commit_prepared', flags: 0, commitLsn: lsn(400n), endLsn: lsn(500n), commitTime: ts(600n), xid: 742, gid },
    );
    assert.deepEqual(
      decodePgoutput(new Bytes().ch('r').u8(0).i64(200n).i64(700n).i64(300n).i64(800n).i32(742).cstr(gid).build(), false),
      { tag: 'rollback_prepared', flags: 0, prepareEndLsn: lsn(200n), rollbackEndLsn: lsn(700n), prepareTime: ts(300n), rollbackTime: ts(800n), xid: 742, gid },
    );
    assert.deepEqual(
      decodePgoutput(new Bytes().ch('p').u8(0).i64(100n).i64(200n).i64(300n).i32(0xffff_fff0).cstr(gid).build(), false),
      { tag: 'stream_prepare', flags: 0, prepareLsn: lsn(100n), endLsn: lsn(200n), prepareTime: ts(300n), xid: 0xffff_fff0, gid },
    );
  });
});

describe('pgoutput Relation and Type', () => {
  const relation = (inStream: boolean, replident: string, schema: string, name: string): Buffer => {
    const b = new Bytes().ch('R');
    if (inStream) b.i32(XID);
    return b.i32(OID).cstr(schema).cstr(name).ch(replident).i16(3)
      .u8(1).cstr('id').i32(23).i32(-1)
      .u8(0).cstr('Mixed Case "col"').i32(1043).i32(54)
      .u8(3).cstr('ñame 名前 🐘').i32(0xffff_ff00).i32(0)
      .build();
  };
  const columns = [
    { name: 'id', isKey: true, typeOid: 23, typeMod: -1 },
    { name: 'Mixed Case "col"', isKey: false, typeOid: 1043, typeMod: 54 },
    // Only bit 1 means "key"; unknown bits are ignored. OIDs are unsigned.
    { name: 'ñame 名前 🐘', isKey: true, typeOid: 0xffff_ff00, typeMod: 0 },
  ];

  for (const [byte, identity] of [['d', 'default'], ['n', 'nothing'], ['f', 'full'], ['i', 'index']] as const) {
    it(`decodes replica identity '${byte}' with odd identifiers`, () => {
      assert.deepEqual(decodePgoutput(relation(false, byte, 'My "Schema"', 'Table With Spaces'), false), {
        tag: 'relation', xid: undefined, relationOid: OID, schema: 'My "Schema"', name: 'Table With Spaces',
        replicaIdentity: identity, columns,
      });
    });
  }

  it('decodes a Relation inside a stream, with unicode names', () => {
    assert.deepEqual(decodePgoutput(relation(true, 'f', 'схема', 'テーブル 🙂'), true), {
      tag: 'relation', xid: XID, relationOid: OID, schema: 'схема', name: 'テーブル 🙂', replicaIdentity: 'full', columns,
    });
  });

  it('decodes pg_catalog as an empty schema and a relation with no columns', () => {
    const payload = new Bytes().ch('R').i32(OID).cstr('').cstr('t').ch('n').i16(0).build();
    assert.deepEqual(decodePgoutput(payload, false), {
      tag: 'relation', xid: undefined, relationOid: OID, schema: '', name: 't', replicaIdentity: 'nothing', columns: [],
    });
  });

  it('rejects an unknown replica identity byte at its offset', () => {
    const payload = relation(false, 'x', 'a', 'b');
    decodeError(() => decodePgoutput(payload, false), 1 + 4 + 2 + 2, /replica identity/);
  });

  it('rejects a missing NUL in an identifier', () => {
    const payload = new Bytes().ch('R').i32(OID).cstr('public').raw(Buffer.from('unterminated')).build();
    decodeError(() => decodePgoutput(payload, false), 12, /NUL/);
  });

  it('rejects a column count larger than the message', () => {
    const payload = new Bytes().ch('R').i32(OID).cstr('s').cstr('t').ch('d').i16(30_000).build();
    decodeError(() => decodePgoutput(payload, false), 10);
    const negative = new Bytes().ch('R').i32(OID).cstr('s').cstr('t').ch('d').i16(-1).build();
    decodeError(() => decodePgoutput(negative, false), 10, /negative/);
  });

  it('decodes Type in and out of a stream', () => {
    assert.deepEqual(decodePgoutput(new Bytes().ch('Y').i32(16_500).cstr('public').cstr('Mood "enum"').build(), false), {
      tag: 'type', xid: undefined, typeOid: 16_500, schema: 'public', name: 'Mood "enum"',
    });
    assert.deepEqual(decodePgoutput(new Bytes().ch('Y').i32(XID).i32(16_500).cstr('public').cstr('mood').build(), true), {
      tag: 'type', xid: XID, typeOid: 16_500, schema: 'public', name: 'mood',
    });
  });
});

describe('pgoutput TupleData and row changes', () => {
  const allKinds = (b: Bytes): Bytes => b.i16(6).text('42').ch('n').ch('u').bin([0x00, 0xff, 0x10]).text('').bin([]);
  const allKindsValues: TupleValue[] = [text('42'), NULL, UNCHANGED, { kind: 'binary', value: new Uint8Array([0x00, 0xff, 0x10]) }, text(''), { kind: 'binary', value: new Uint8Array([]) }];

  it('decodes Insert with every tuple column kind', () => {
    const payload = allKinds(new Bytes().ch('I').i32(OID).ch('N')).build();
    assert.deepEqual(decodePgoutput(payload, false), { tag: 'insert', xid: undefined, relationOid: OID, newTuple: allKindsValues });
  });

  it('decodes Insert inside a stream (leading xid)', () => {
    const payload = allKinds(new Bytes().ch('I').i32(XID).i32(OID).ch('N')).build();
    assert.deepEqual(decodePgoutput(payload, true), { tag: 'insert', xid: XID, relationOid: OID, newTuple: allKindsValues });
  });

  it('decodes unicode text values exactly', () => {
    const values = ['héllo wörld', '日本語テキスト', '🐘🚀 emoji', 'e\u0301 combining', 'tab\tnew\nline', '"quoted" \'single\' \\back', 'Ω'];
    const b = new Bytes().ch('I').i32(OID).ch('N').i16(values.length);
    for (const v of values) b.text(v);
    const message = decodePgoutput(b.build(), false);
    assert.equal(message.tag, 'insert');
    assert.deepEqual(message.newTuple, values.map(text));
  });

  it('keeps binary values as views into the payload, not copies', () => {
    const payload = new Bytes().ch('I').i32(OID).ch('N').i16(1).bin([1, 2, 3, 4]).build();
    const message = decodePgoutput(payload, false);
    assert.equal(message.tag, 'insert');
    const value = message.newTuple[0];
    assert.ok(value !== undefined && value.kind === 'binary');
    assert.deepEqual(value.value, new Uint8Array([1, 2, 3, 4]));
    assert.equal(value.value.buffer, payload.buffer);
    assert.equal(value.value.byteOffset, payload.byteOffset + 13);
  });

  it('accepts a plain Uint8Array payload with a non-zero byteOffset', () => {
    const inner = new Bytes().ch('I').i32(OID).ch('N').i16(2).text('ok').bin([9]).build();
    const backing = new Uint8Array(inner.length + 7);
    backing.set(inner, 3);
    const payload = backing.subarray(3, 3 + inner.length);
    assert.deepEqual(decodePgoutput(payload, false), {
      tag: 'insert', xid: undefined, relationOid: OID, newTuple: [text('ok'), { kind: 'binary', value: new Uint8Array([9]) }],
    });
  });

  it('decodes Update without an old tuple', () => {
    const payload = new Bytes().ch('U').i32(OID).ch('N').i16(2).text('1').ch('u').build();
    assert.deepEqual(decodePgoutput(payload, false), {
      tag: 'update', xid: undefined, relationOid: OID, oldKind: undefined, oldTuple: undefined, newTuple: [text('1'), UNCHANGED],
    });
  });

  it("decodes Update with an old key ('K')", () => {
    const payload = new Bytes().ch('U').i32(OID).ch('K').i16(2).text('1').ch('n').ch('N').i16(2).text('2').text('x').build();
    assert.deepEqual(decodePgoutput(payload, false), {
      tag: 'update', xid: undefined, relationOid: OID, oldKind: 'key', oldTuple: [text('1'), NULL], newTuple: [text('2'), text('x')],
    });
  });

  it("decodes Update with a full old row ('O') inside a stream", () => {
    const payload = new Bytes().ch('U').i32(XID).i32(OID).ch('O').i16(2).text('1').bin([7]).ch('N').i16(2).text('1').bin([8]).build();
    assert.deepEqual(decodePgoutput(payload, true), {
      tag: 'update', xid: XID, relationOid: OID, oldKind: 'full',
      oldTuple: [text('1'), { kind: 'binary', value: new Uint8Array([7]) }],
      newTuple: [text('1'), { kind: 'binary', value: new Uint8Array([8]) }],
    });
  });

  it("rejects an Update whose second marker is not 'N'", () => {
    const payload = new Bytes().ch('U').i32(OID).ch('K').i16(1).text('1').ch('K').i16(1).text('2').build();
    decodeError(() => decodePgoutput(payload, false), 14, /expected 'N'/);
    decodeError(() => decodePgoutput(new Bytes().ch('U').i32(OID).ch('X').build(), false), 5);
  });

  it("decodes Delete with 'K' and 'O', in and out of a stream", () => {
    assert.deepEqual(decodePgoutput(new Bytes().ch('D').i32(OID).ch('K').i16(2).text('7').ch('n').build(), false), {
      tag: 'delete', xid: undefined, relationOid: OID, oldKind: 'key', oldTuple: [text('7'), NULL],
    });
    assert.deepEqual(decodePgoutput(new Bytes().ch('D').i32(XID).i32(OID).ch('O').i16(2).text('7').text('ß').build(), true), {
      tag: 'delete', xid: XID, relationOid: OID, oldKind: 'full', oldTuple: [text('7'), text('ß')],
    });
  });

  it("rejects a Delete without 'K' or 'O'", () => {
    decodeError(() => decodePgoutput(new Bytes().ch('D').i32(OID).ch('N').i16(0).build(), false), 5, /'K' or 'O'/);
  });

  it("rejects an Insert without 'N'", () => {
    decodeError(() => decodePgoutput(new Bytes().ch('I').i32(OID).ch('K').i16(0).build(), false), 5);
  });

  it('rejects an unknown tuple column kind at its offset', () => {
    const payload = new Bytes().ch('I').i32(OID).ch('N').i16(2).text('a').ch('x').build();
    decodeError(() => decodePgoutput(payload, false), 14, /column kind 0x78 'x'/);
  });

  it('rejects negative and overlong column lengths at the length field', () => {
    const negative = new Bytes().ch('I').i32(OID).ch('N').i16(1).ch('t').i32(-1).build();
    decodeError(() => decodePgoutput(negative, false), 9, /negative length/);
    const overlong = new Bytes().ch('I').i32(OID).ch('N').i16(1).ch('b').i32(5).raw([1, 2, 3, 4]).build();
    decodeError(() => decodePgoutput(overlong, false), 9, /past the end/);
  });

  it('rejects a negative or oversized tuple column count', () => {
    decodeError(() => decodePgoutput(new Bytes().ch('I').i32(OID).ch('N').i16(-2).build(), false), 6, /negative/);
    decodeError(() => decodePgoutput(new Bytes().ch('I').i32(OID).ch('N').i16(3).ch('n').build(), false), 6);
  });

  it('rejects a tuple cut short', () => {
    const payload = new Bytes().ch('I').i32(OID).ch('N').i16(3).ch('n').ch('n').build();
    decodeError(() => decodePgoutput(payload, false), 6);
    const cut = new Bytes().ch('I').i32(OID).ch('N').i16(2).ch('n').ch('n').build();
    // Valid once complete; every strict prefix fails with an offset inside the prefix.
    assert.equal(decodePgoutput(cut, false).tag, 'insert');
    for (let n = 0; n < cut.length; n++) {
      const error = decodeError(() => decodePgoutput(cut.subarray(0, n), false));
      assert.ok(error.offset >= 0 && error.offset <= n);
    }
  });
});

describe('pgoutput Truncate and Message', () => {
  for (const [options, cascade, restartIdentity] of [[0, false, false], [1, true, false], [2, false, true], [3, true, true]] as const) {
    it(`decodes Truncate with option bits ${options}`, () => {
      const payload = new Bytes().ch('T').i32(3).u8(options).i32(OID).i32(OID + 1).i32(0xffff_fffe).build();
      assert.deepEqual(decodePgoutput(payload, false), {
        tag: 'truncate', xid: undefined, cascade, restartIdentity, relationOids: [OID, OID + 1, 0xffff_fffe],
      });
    });
  }

  it('decodes Truncate inside a stream', () => {
    assert.deepEqual(decodePgoutput(new Bytes().ch('T').i32(XID).i32(1).u8(1).i32(OID).build(), true), {
      tag: 'truncate', xid: XID, cascade: true, restartIdentity: false, relationOids: [OID],
    });
  });

  it('rejects a Truncate whose relation count does not match', () => {
    decodeError(() => decodePgoutput(new Bytes().ch('T').i32(2).u8(0).i32(OID).build(), false), 1);
    decodeError(() => decodePgoutput(new Bytes().ch('T').i32(-1).u8(0).build(), false), 1, /negative/);
    decodeError(() => decodePgoutput(new Bytes().ch('T').i32(1).u8(0).i32(OID).i32(OID).build(), false), 10, /trailing/);
  });

  it('decodes transactional and non-transactional logical messages', () => {
    const content = [0x7b, 0x7d, 0x00, 0xff];
    assert.deepEqual(decodePgoutput(new Bytes().ch('M').u8(1).i64(0x99n).cstr('pgtide/fence').i32(content.length).raw(content).build(), false), {
      tag: 'message', xid: undefined, transactional: true, lsn: lsn(0x99n), prefix: 'pgtide/fence', content: new Uint8Array(content),
    });
    assert.deepEqual(decodePgoutput(new Bytes().ch('M').u8(0).i64(0x99n).cstr('préfixe').i32(0).build(), false), {
      tag: 'message', xid: undefined, transactional: false, lsn: lsn(0x99n), prefix: 'préfixe', content: new Uint8Array([]),
    });
  });

  it('decodes a logical message inside a stream', () => {
    assert.deepEqual(decodePgoutput(new Bytes().ch('M').i32(XID).u8(1).i64(5n).cstr('p').i32(1).u8(65).build(), true), {
      tag: 'message', xid: XID, transactional: true, lsn: lsn(5n), prefix: 'p', content: new Uint8Array([65]),
    });
  });

  it('rejects a logical message whose content length runs past the end', () => {
    decodeError(() => decodePgoutput(new Bytes().ch('M').u8(1).i64(5n).cstr('p').i32(10).u8(65).build(), false), 12, /past the end/);
  });
});

describe('pgoutput streaming messages', () => {
  it('decodes Stream Start (first and later segments) and Stream Stop', () => {
    assert.deepEqual(decodePgoutput(new Bytes().ch('S').i32(XID).u8(1).build(), false), { tag: 'stream_start', xid: XID, firstSegment: true });
    assert.deepEqual(decodePgoutput(new Bytes().ch('S').i32(XID).u8(0).build(), false), { tag: 'stream_start', xid: XID, firstSegment: false });
    assert.deepEqual(decodePgoutput(hex('45'), true), { tag: 'stream_stop' });
  });

  it('decodes Stream Commit', () => {
    assert.deepEqual(decodePgoutput(new Bytes().ch('c').i32(XID).u8(0).i64(10n).i64(20n).i64(30n).build(), false), {
      tag: 'stream_commit', xid: XID, flags: 0, commitLsn: lsn(10n), endLsn: lsn(20n), commitTime: ts(30n),
    });
  });

  const shortAbort = new Bytes().ch('A').i32(XID).i32(XID + 5).build();
  const longAbort = new Bytes().ch('A').i32(XID).i32(XID + 5).i64(0x2_0000_0000n).i64(757_382_400_000_001n).build();

  it('decodes a v2/v3 Stream Abort (no abort LSN/time)', () => {
    assert.equal(shortAbort.length, 9);
    const expected = { tag: 'stream_abort', xid: XID, subxid: XID + 5, abortLsn: undefined, abortTime: undefined };
    assert.deepEqual(decodePgoutput(shortAbort, false), expected);
    assert.deepEqual(new PgoutputDecoder({ protocolVersion: 4 }).decode(shortAbort), expected);
  });

  it('decodes a v4 parallel Stream Abort with abort LSN and time', () => {
    assert.equal(longAbort.length, 25);
    const expected = { tag: 'stream_abort', xid: XID, subxid: XID + 5, abortLsn: lsn(0x2_0000_0000n), abortTime: ts(757_382_400_000_001n) };
    assert.deepEqual(new PgoutputDecoder({ protocolVersion: 4, parallelStreaming: true }).decode(longAbort), expected);
    assert.deepEqual(decodePgoutput(longAbort, false, { parallelStreaming: true }), expected);
    // Tolerant: the extra fields are decoded even when parallel streaming was not declared.
    assert.deepEqual(new PgoutputDecoder({ protocolVersion: 2 }).decode(longAbort), expected);
    assert.deepEqual(decodePgoutput(longAbort, false), expected);
  });

  it('rejects a short Stream Abort when parallel streaming was negotiated, and odd lengths always', () => {
    decodeError(() => new PgoutputDecoder({ protocolVersion: 4, parallelStreaming: true }).decode(shortAbort), 9, /truncated/);
    decodeError(() => decodePgoutput(longAbort.subarray(0, 13), false), 9);
    decodeError(() => decodePgoutput(Buffer.concat([longAbort, hex('00')]), false), 25, /trailing/);
  });
});

describe('PgoutputDecoder stream tracking', () => {
  it('adds the xid to data messages only between Stream Start and Stream Stop', () => {
    const decoder = new PgoutputDecoder({ protocolVersion: 2 });
    const insertOutside = new Bytes().ch('I').i32(OID).ch('N').i16(1).text('a').build();
    const insertInside = new Bytes().ch('I').i32(XID).i32(OID).ch('N').i16(1).text('a').build();
    assert.equal(decoder.inStream, false);
    assert.deepEqual(decoder.decode(insertOutside), { tag: 'insert', xid: undefined, relationOid: OID, newTuple: [text('a')] });
    decoder.decode(new Bytes().ch('S').i32(XID).u8(1).build());
    assert.equal(decoder.inStream, true);
    decoder.decode(new Bytes().ch('O').i64(1n).cstr('origin').build());
    assert.deepEqual(decoder.decode(insertInside), { tag: 'insert', xid: XID, relationOid: OID, newTuple: [text('a')] });
    decoder.decode(hex('45'));
    assert.equal(decoder.inStream, false);
    assert.deepEqual(decoder.decode(new Bytes().ch('c').i32(XID).u8(0).i64(1n).i64(2n).i64(3n).build()).tag, 'stream_commit');
    assert.deepEqual(decoder.decode(insertOutside).tag, 'insert');
  });

  it('rejects Stream Stop outside a stream and transaction control inside one', () => {
    const decoder = new PgoutputDecoder({ protocolVersion: 2 });
    decodeError(() => decoder.decode(hex('45')), 0, /Stream Stop/);
    decoder.decode(new Bytes().ch('S').i32(XID).u8(1).build());
    decodeError(() => decoder.decode(new Bytes().ch('S').i32(XID).u8(0).build()), 0, /inside a streamed chunk/);
    decodeError(() => decoder.decode(new Bytes().ch('B').i64(1n).i64(2n).i32(3).build()), 0, /inside a streamed chunk/);
    assert.equal(decoder.inStream, true);
    decoder.reset();
    assert.equal(decoder.inStream, false);
  });

  it('keeps its state when a message fails to decode', () => {
    const decoder = new PgoutputDecoder({ protocolVersion: 2 });
    decoder.decode(new Bytes().ch('S').i32(XID).u8(1).build());
    decodeError(() => decoder.decode(hex('45 00')), 1, /trailing/);
    assert.equal(decoder.inStream, true);
  });

  it('validates its options', () => {
    assert.throws(() => new PgoutputDecoder({ protocolVersion: 3, parallelStreaming: true }), RangeError);
    assert.throws(() => new PgoutputDecoder({ protocolVersion: 5 as 4 }), RangeError);
  });
});

describe('pgoutput malformed input', () => {
  it('rejects an empty payload and unknown tags at offset 0', () => {
    decodeError(() => decodePgoutput(new Uint8Array(0), false), 0, /empty/);
    decodeError(() => decodePgoutput(hex('5a 00 00'), false), 0, /unknown pgoutput message tag 0x5a 'Z'/);
    decodeError(() => decodePgoutput(hex('00'), false), 0);
  });

  it('rejects trailing bytes after a complete message', () => {
    const begin = new Bytes().ch('B').i64(1n).i64(2n).i32(3).u8(0).build();
    decodeError(() => decodePgoutput(begin, false), 21, /trailing/);
  });

  it('rejects a data message decoded with the wrong stream state', () => {
    // Read as in-stream, the relation OID becomes the xid and the tuple marker is misread.
    const outside = new Bytes().ch('I').i32(OID).ch('N').i16(1).text('a').build();
    decodeError(() => decodePgoutput(outside, true));
  });

  it('names the offset of every truncated fixed field', () => {
    const commit = new Bytes().ch('C').u8(0).i64(1n).i64(2n).i64(3n).build();
    for (let n = 1; n < commit.length; n++) {
      const error = decodeError(() => decodePgoutput(commit.subarray(0, n), false));
      // Offsets point at the start of the field that did not fit.
      assert.equal(error.offset, n === 1 ? 1 : n < 10 ? 2 : n < 18 ? 10 : 18);
    }
  });
});

describe('ByteReader', () => {
  it('reads big-endian integers, LSNs and C strings', () => {
    const r = new ByteReader(hex('ff fffe 80000000 ffffffff fffffffffffffffe 8000000000000000 6869 00'));
    assert.equal(r.readUint8(), 0xff);
    assert.equal(r.readInt16(), -2);
    assert.equal(r.readInt32(), -0x8000_0000);
    assert.equal(r.readUint32(), 0xffff_ffff);
    assert.equal(r.readInt64(), -2n);
    assert.equal(r.readLsn(), 0x8000_0000_0000_0000n);
    assert.equal(r.readCString(), 'hi');
    r.expectEnd('test');
    assert.equal(r.remaining, 0);
    decodeError(() => r.readUint8(), 30, /truncated/);
  });

  it('reads Int64 values around the 2^53 fast path boundary exactly', () => {
    for (const v of [0n, 1n, -1n, 2n ** 53n - 1n, 2n ** 53n, -(2n ** 53n), 2n ** 63n - 1n, -(2n ** 63n), 0x001f_ffff_ffff_ffffn, 0x0020_0000_0000_0000n]) {
      const r = new ByteReader(new Bytes().i64(v).i64(v).build());
      assert.equal(r.readInt64(), v);
      assert.equal(r.readUint64(), BigInt.asUintN(64, v));
    }
  });

  it('reads UTF-8 strings of every length through both the short and the native path', () => {
    for (const s of ['', 'a', 'abcdefg', 'abcdefgh', 'abcdefghi', 'é', 'aé', '1234567é', 'x'.repeat(100) + '🐘']) {
      const b = Buffer.from(s, 'utf8');
      assert.equal(new ByteReader(b).readUtf8(b.length), s);
    }
  });
});

describe('replication frames', () => {
  it('decodes XLogData and returns the payload as a view', () => {
    const frame = new Bytes().ch('w').i64(0x1_0000_0000n).i64(0x1_0000_0100n).i64(757_382_400_000_000n).raw(hex('42 0102')).build();
    const decoded = decodeReplicationFrame(frame);
    assert.equal(decoded.tag, 'xlog_data');
    assert.equal(decoded.walStart, lsn(0x1_0000_0000n));
    assert.equal(decoded.walEnd, lsn(0x1_0000_0100n));
    assert.equal(decoded.sendTime, ts(757_382_400_000_000n));
    assert.deepEqual([...decoded.payload], [0x42, 0x01, 0x02]);
    assert.equal(decoded.payload.buffer, frame.buffer);
    assert.equal(decoded.payload.byteOffset, frame.byteOffset + 25);
  });

  it('decodes an XLogData frame with an empty payload', () => {
    const decoded = decodeReplicationFrame(new Bytes().ch('w').i64(1n).i64(2n).i64(3n).build());
    assert.equal(decoded.tag, 'xlog_data');
    assert.equal(decoded.payload.length, 0);
  });

  it('decodes primary keepalives', () => {
    assert.deepEqual(decodeReplicationFrame(hex('6b 0000000116B374D8 0002B0D5D4E94000 01')), {
      tag: 'keepalive', walEnd: lsn(0x1_16b3_74d8n), sendTime: ts(757_382_400_000_000n), replyRequested: true,
    });
    assert.deepEqual(decodeReplicationFrame(new Bytes().ch('k').i64(5n).i64(6n).u8(0).build()), {
      tag: 'keepalive', walEnd: lsn(5n), sendTime: ts(6n), replyRequested: false,
    });
  });

  it('rejects malformed frames with DecodeError', () => {
    decodeError(() => decodeReplicationFrame(new Uint8Array(0)), 0, /empty/);
    decodeError(() => decodeReplicationFrame(hex('64 00')), 0, /unknown replication frame tag 0x64/);
    decodeError(() => decodeReplicationFrame(new Bytes().ch('w').i64(1n).i64(2n).build()), 17, /truncated/);
    decodeError(() => decodeReplicationFrame(new Bytes().ch('k').i64(5n).i64(6n).build()), 17, /truncated/);
    decodeError(() => decodeReplicationFrame(new Bytes().ch('k').i64(5n).i64(6n).u8(0).u8(0).build()), 18, /trailing/);
  });

  it('encodes a standby status update byte for byte', () => {
    const out = encodeStandbyStatusUpdate(lsn(0x16_b374_d848n), lsn(0x16_b374_d800n), lsn(0x1n), ts(757_382_400_000_000n), true);
    assert.equal(out.length, 34);
    assert.equal(out.toString('hex'), '72' + '00000016b374d848' + '00000016b374d800' + '0000000000000001' + '0002b0d5d4e94000' + '01');
    const noReply = encodeStandbyStatusUpdate(lsn(0xffff_ffff_ffff_ffffn), lsn(0n), lsn(0n), ts(-1n), false);
    assert.equal(noReply.toString('hex'), '72' + 'ffffffffffffffff' + '0'.repeat(32) + 'ffffffffffffffff' + '00');
  });
});

describe('every message kind round-trips through PgoutputDecoder in a realistic sequence', () => {
  it('decodes a streamed transaction followed by a plain one', () => {
    const decoder = new PgoutputDecoder({ protocolVersion: 4, parallelStreaming: true });
    const sequence: Buffer[] = [
      new Bytes().ch('S').i32(XID).u8(1).build(),
      new Bytes().ch('R').i32(XID).i32(OID).cstr('public').cstr('t').ch('d').i16(1).u8(1).cstr('id').i32(23).i32(-1).build(),
      new Bytes().ch('I').i32(XID).i32(OID).ch('N').i16(1).text('1').build(),
      hex('45'),
      new Bytes().ch('A').i32(XID).i32(XID + 1).i64(9n).i64(10n).build(),
      new Bytes().ch('c').i32(XID).u8(0).i64(11n).i64(12n).i64(13n).build(),
      new Bytes().ch('B').i64(20n).i64(21n).i32(XID + 2).build(),
      new Bytes().ch('D').i32(OID).ch('K').i16(1).text('1').build(),
      new Bytes().ch('C').u8(0).i64(20n).i64(22n).i64(21n).build(),
    ];
    const tags = sequence.map((m) => decoder.decode(m).tag);
    assert.deepEqual(tags, ['stream_start', 'relation', 'insert', 'stream_stop', 'stream_abort', 'stream_commit', 'begin', 'delete', 'commit'] satisfies PgoutputMessage['tag'][]);
  });
});
