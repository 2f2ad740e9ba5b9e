import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSpill, SpillEncoder, type SpilledChange } from '../../src/changes/spill-codec.js';
import type { OpId, RowChange } from '../../src/changes/change.js';
import type { Relation } from '../../src/changes/relation-cache.js';
import { DecodeError } from '../../src/core/errors.js';

const rel = (version: number, name: string): Relation => ({
  oid: 100 + version, schema: 's p', name, replicaIdentity: 'default', columns: [], keyIndexes: [0], qualifiedName: `"s p"."${name}"`, version,
} as unknown as Relation);
const A = rel(1, 'a');
const B = rel(2, 'Bé');
const byVersion = new Map([[1, A], [2, B]]);
const lookup = (v: number): Relation => {
  const r = byVersion.get(v);
  if (!r) throw new Error(`no relation ${v}`);
  return r;
};
const op = (n: number) => n as OpId;

const CHANGES: readonly SpilledChange[] = [
  { subxid: 7, change: { kind: 'insert', opId: op(1), relation: A, newTuple: [{ kind: 'text', value: '42' }, { kind: 'null' }, { kind: 'text', value: 'ünïcødé 🐘 "quoted" \\ and\nnewline' }, { kind: 'text', value: '' }] } },
  { subxid: 4_000_000_000, change: { kind: 'update', opId: op(2 ** 40 + 3), relation: B, oldTuple: [{ kind: 'text', value: 'old' }, { kind: 'unchanged' }], newTuple: [{ kind: 'text', value: 'new' }, { kind: 'unchanged' }] } },
  { subxid: 7, change: { kind: 'update', opId: op(4), relation: A, oldTuple: undefined, newTuple: [{ kind: 'binary', value: new Uint8Array([0, 255, 16]) }] } },
  { subxid: 8, change: { kind: 'delete', opId: op(5), relation: A, oldTuple: [{ kind: 'text', value: 'x'.repeat(70_000) }] } },
  { subxid: 7, change: { kind: 'truncate', opId: op(6), relations: [A, B], cascade: true, restartIdentity: false } },
  { subxid: 7, change: { kind: 'message', opId: op(7), prefix: 'préfixe', content: new Uint8Array([1, 2, 3]) } },
];

function encodeAll(changes: readonly SpilledChange[]): Buffer {
  const encoder = new SpillEncoder();
  for (const c of changes) encoder.append(c.subxid, c.change, (r) => r.version);
  return Buffer.from(encoder.bytes());
}

async function readAll(file: string, chunk?: number): Promise<{ batches: number; changes: SpilledChange[] }> {
  const changes: SpilledChange[] = [];
  let batches = 0;
  for await (const batch of readSpill(file, lookup, chunk)) { batches++; changes.push(...batch); }
  return { batches, changes };
}

/** deepEqual sees a Uint8Array view and a copy as equal when the bytes are; normalize binary values to arrays. */
function plain(changes: readonly SpilledChange[]): unknown {
  return JSON.parse(JSON.stringify(changes, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v)));
}

test('spill records have a fixed big-endian layout with pgoutput TupleData', () => {
  const change: RowChange = { kind: 'insert', opId: op(0x1_0000_0002), relation: A, newTuple: [{ kind: 'text', value: 'hi' }, { kind: 'null' }] };
  const bytes = encodeAll([{ subxid: 9, change }]);
  assert.deepEqual([...bytes], [
    0, 0, 0, 27, // length of the rest
    0, 0, 0, 9, // subxid
    0, 0, 0, 1, 0, 0, 0, 2, // opId high, low
    0x49, // 'I'
    0, 0, 0, 1, // relation version
    0, 2, // TupleData: 2 columns
    0x74, 0, 0, 0, 2, 0x68, 0x69, // 't' len 2 "hi"
    0x6e, // 'n'
  ]);
});

test('every change kind survives the round trip, whatever the read chunk size', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-spill-codec-'));
  try {
    const file = path.join(dir, 'x.spill');
    writeFileSync(file, encodeAll(CHANGES));
    for (const chunk of [7, 64, 1024, 4 << 20]) {
      const { changes, batches } = await readAll(file, chunk);
      assert.deepEqual(plain(changes), plain(CHANGES), `chunk ${chunk}`);
      assert.ok(batches >= 1 && batches <= CHANGES.length, `chunk ${chunk}: ${batches} batches`);
    }
    // Relations come back as the very objects the versions name.
    const { changes } = await readAll(file);
    assert.equal((changes[1]!.change as { relation: Relation }).relation, B);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a truncated or corrupt spill file raises DecodeError, never anything else', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-spill-codec-'));
  try {
    const whole = encodeAll(CHANGES.slice(0, 2));
    const file = path.join(dir, 'x.spill');
    writeFileSync(file, whole.subarray(0, whole.length - 3));
    await assert.rejects(readAll(file), (e: unknown) => e instanceof DecodeError && /ends inside a record/.test(e.message));
    const bad = Buffer.from(whole);
    bad[16] = 0x5a; // kind byte of the first record
    writeFileSync(file, bad);
    await assert.rejects(readAll(file), (e: unknown) => e instanceof DecodeError && /unknown spill record kind/.test(e.message));
    writeFileSync(file, Buffer.from([0, 0, 0, 2, 1, 2]));
    await assert.rejects(readAll(file), (e: unknown) => e instanceof DecodeError && /impossible length/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
