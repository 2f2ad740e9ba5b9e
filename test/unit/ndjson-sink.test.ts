/**
 * The NDJSON sink without a server: the exact bytes of a line (TOAST marker,
 * NULL against the text "null", bytea text and binary values, keys, FULL
 * identity, truncate, logical messages, microsecond commit times), and the
 * file discipline that makes it exactly-once (torn line cut off, position
 * taken from the last line, transactions at or below it skipped, a rollback
 * cuts unfinished lines).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CommitInfo, OpId, RowChange, TransactionInfo } from '../../src/changes/change.js';
import type { Relation } from '../../src/changes/relation-cache.js';
import { lsn, parseLsn, type Lsn } from '../../src/core/lsn.js';
import type { PgTimestamp, RelationColumn, Tuple } from '../../src/protocol/messages.js';
import { formatCommitTime, linePositions, transactionLine } from '../../src/sinks/ndjson/line-format.js';
import { NdjsonSink } from '../../src/sinks/ndjson/ndjson-sink.js';
import { NdjsonStateFile } from '../../src/sinks/ndjson/state-file.js';
import { parseConfig } from '../../src/control/config.js';
import { postgresTargetUrl } from '../../src/control/target-config.js';
import { PgtideError } from '../../src/core/errors.js';

const col = (name: string, isKey = false): RelationColumn => ({ name, isKey, typeOid: 25, typeMod: -1 });
function relation(name: string, columns: RelationColumn[], replicaIdentity: Relation['replicaIdentity'] = 'default'): Relation {
  const keyIndexes = replicaIdentity === 'full' ? [] : columns.flatMap((c, i) => (c.isKey ? [i] : []));
  return { oid: 1, schema: 'public', name, replicaIdentity, columns, keyIndexes, qualifiedName: `"public"."${name}"`, version: 1 };
}
const text = (value: string) => ({ kind: 'text', value }) as const;
const NULL = { kind: 'null' } as const;
const UNCHANGED = { kind: 'unchanged' } as const;
let op = 0;
const opId = () => ++op as OpId;

/** 2026-12-06T17:00:00.123456Z in PostgreSQL's microseconds since 2000-01-01. */
const TS = ((Date.UTC(2026, 11, 6, 17, 0, 0) - Date.UTC(2000, 0, 1)) * 1000 + 123_456) as unknown as PgTimestamp;
const txInfo = (xid: number, commit: bigint, origin?: string): TransactionInfo => ({ xid, commitLsn: lsn(commit), commitTime: BigInt(TS) as PgTimestamp, origin, streamed: false });
const commitInfo = (commit: bigint): CommitInfo => ({ commitLsn: lsn(commit), endLsn: lsn(commit + 0x30n), commitTime: BigInt(TS) as PgTimestamp });

test('commit time keeps its microseconds', () => {
  assert.equal(formatCommitTime(BigInt(TS) as PgTimestamp), '2026-12-06T17:00:00.123456Z');
  assert.equal(formatCommitTime(0n as PgTimestamp), '2000-01-01T00:00:00.000000Z');
});

test('a line, byte for byte: keys, NULL vs "null", unchanged TOAST, bytea as text and as binary', () => {
  const docs = relation('docs', [col('id', true), col('body'), col('note'), col('raw')]);
  const changes: RowChange[] = [
    { kind: 'insert', opId: opId(), relation: docs, newTuple: [text('1'), text('null'), NULL, text('\\x00ff')] },
    { kind: 'update', opId: opId(), relation: docs, oldTuple: undefined, newTuple: [text('1'), UNCHANGED, text('n "q"'), { kind: 'binary', value: Uint8Array.of(0, 255, 10) }] },
    { kind: 'delete', opId: opId(), relation: docs, oldTuple: [text('1'), NULL, NULL, NULL] },
  ];
  const line = transactionLine(txInfo(731, 0x1A2B3C8n), changes, commitInfo(0x1A2B3C8n));
  assert.equal(line,
    '{"xid":731,"commit_lsn":"0/1A2B3C8","commit_time":"2026-12-06T17:00:00.123456Z","origin":null,"changes":['
    + '{"kind":"insert","schema":"public","table":"docs","key":{"id":"1"},"new":{"id":"1","body":"null","note":null,"raw":"\\\\x00ff"}},'
    + '{"kind":"update","schema":"public","table":"docs","key":{"id":"1"},"new":{"id":"1","body":{"toast":"unchanged"},"note":"n \\"q\\"","raw":{"base64":"AP8K"}}},'
    // A key-only old tuple is not an old row: the nulls it carries were never read, so no "old".
    + '{"kind":"delete","schema":"public","table":"docs","key":{"id":"1"}}'
    + '],"end_lsn":"0/1A2B3F8"}\n');
  const parsed = JSON.parse(line) as { changes: { new?: Record<string, unknown> }[] };
  assert.equal(parsed.changes[0]!.new!.body, 'null', 'the text "null" is a string');
  assert.equal(parsed.changes[0]!.new!.note, null, 'SQL NULL is JSON null');
  assert.deepEqual(linePositions(line.trimEnd()), { commitLsn: '0/1A2B3C8', endLsn: '0/1A2B3F8' });
});

test('a changed key: the old key, then the new row; an unchanged out-of-line key takes the old value', () => {
  const t = relation('t', [col('a', true), col('b', true), col('v')]);
  const moved: RowChange = { kind: 'update', opId: opId(), relation: t, oldTuple: [text('1'), text('x'), NULL], newTuple: [text('2'), text('x'), text('v')] };
  const line = transactionLine(txInfo(5, 0x100n, 'node_a'), [moved], commitInfo(0x100n));
  assert.match(line, /"origin":"node_a"/);
  assert.match(line, /\{"kind":"update","schema":"public","table":"t","key":\{"a":"1","b":"x"\},"new":\{"a":"2","b":"x","v":"v"\}\}/);
  const toastKey: RowChange = { kind: 'update', opId: opId(), relation: t, oldTuple: undefined, newTuple: [text('3'), UNCHANGED, text('w')] };
  assert.match(transactionLine(txInfo(6, 0x200n), [toastKey], commitInfo(0x200n)), /"key":\{"a":"3","b":\{"toast":"unchanged"\}\}/, 'never invented: marked when the server did not send it');
});

test('REPLICA IDENTITY FULL: no key, the whole old row; column names that look like numbers keep their order', () => {
  const full = relation('f', [col('z', true), col('10', true), col('2', true)], 'full');
  const upd: RowChange = { kind: 'update', opId: opId(), relation: full, oldTuple: [text('a'), text('b'), NULL], newTuple: [text('a'), text('c'), NULL] };
  const del: RowChange = { kind: 'delete', opId: opId(), relation: full, oldTuple: [text('a'), text('c'), NULL] };
  const line = transactionLine(txInfo(7, 0x300n), [upd, del], commitInfo(0x300n));
  assert.ok(line.includes('{"kind":"update","schema":"public","table":"f","key":null,"old":{"z":"a","10":"b","2":null},"new":{"z":"a","10":"c","2":null}}'), line);
  assert.ok(line.includes('{"kind":"delete","schema":"public","table":"f","key":null,"old":{"z":"a","10":"c","2":null}}'), line);
});

test('truncate and logical messages', () => {
  const a = relation('a', [col('id', true)]);
  const b = { ...relation('b b', [col('id', true)]), schema: 'S' };
  const line = transactionLine(txInfo(8, 0x400n), [
    { kind: 'truncate', opId: opId(), relations: [a, b], cascade: false, restartIdentity: true },
    { kind: 'message', opId: opId(), prefix: 'app.event', content: new TextEncoder().encode('hi') },
  ], commitInfo(0x400n));
  assert.ok(line.includes('{"kind":"truncate","tables":[{"schema":"public","table":"a"},{"schema":"S","table":"b b"}],"cascade":false,"restart_identity":true}'), line);
  assert.ok(line.includes('{"kind":"message","prefix":"app.event","content":{"base64":"aGk="}}'), line);
});

// ---------------------------------------------------------------------------------------------
// The file discipline
// ---------------------------------------------------------------------------------------------

const table = relation('t', [col('id', true), col('v')]);
const ins = (id: number, value = `v${id}`): RowChange => ({ kind: 'insert', opId: opId(), relation: table, newTuple: [text(String(id)), text(value)] });

async function fresh(dir: string): Promise<{ readonly file: string; readonly state: NdjsonStateFile }> {
  const file = path.join(dir, 'out.ndjson');
  const state = await NdjsonStateFile.load(`${file}.state.json`, 'sub');
  await state.createSubscription('sub_slot', 'sub_pub', '123');
  return { file, state };
}

async function write(sink: NdjsonSink, xid: number, commit: bigint, ids: number[]): Promise<void> {
  sink.begin(txInfo(xid, commit));
  for (const id of ids) await sink.change(ins(id));
  await sink.commit(commitInfo(commit));
}

const lines = (file: string): string[] => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');

test('lines are durable before the position; a restart skips what the file holds and cuts a torn line', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-ndjson-'));
  try {
    const { file, state } = await fresh(dir);
    const recovered: string[] = [];
    const options = { path: file, state, batchMaxTransactions: 100, batchMaxAgeMs: 60_000, onRecovery: (what: string) => recovered.push(what) };
    let sink = await NdjsonSink.open(options);
    await write(sink, 1, 0x1000n, [1, 2]);
    assert.equal(existsSync(file) ? readFileSync(file, 'utf8') : '', '', 'nothing written before the batch commits');
    assert.equal(sink.hasPendingWork, true);
    await sink.commitPending();
    assert.equal(sink.durableLsn, lsn(0x1030n));
    assert.equal(state.position?.commitLsn, lsn(0x1000n), 'position recorded after the line');
    // An empty transaction (another table, a heartbeat) moves the position without a line.
    sink.begin(txInfo(2, 0x2000n));
    await sink.commit(commitInfo(0x2000n));
    await sink.commitPending();
    assert.equal(lines(file).length, 1);
    assert.equal(state.position?.commitLsn, lsn(0x2000n));

    // A batch whose state update was lost (the line is on disk, the position is not).
    await write(sink, 3, 0x3000n, [3]);
    await sink.close();
    const stateBefore = state.position;
    const line3 = transactionLine(txInfo(3, 0x3000n), [ins(3)], commitInfo(0x3000n));
    appendFileSync(file, line3);
    // ... and a torn write after it.
    appendFileSync(file, '{"xid":4,"commit_lsn":"0/4000","commit_ti');
    assert.equal(stateBefore?.commitLsn, lsn(0x2000n));
    sink = await NdjsonSink.open(options);
    assert.deepEqual(recovered, ['cut off a torn last line (a write interrupted by a crash)', 'took the position from the last line of the file (its state update was lost)']);
    assert.equal(readFileSync(file, 'utf8').endsWith('"end_lsn":"0/3030"}\n'), true, 'the torn line is gone');
    assert.equal(sink.durableLsn, lsn(0x3030n));
    assert.equal(state.position?.commitLsn, lsn(0x3000n), 'and the state caught up');

    // The server resends from an older confirmed position: what the file holds is skipped.
    await write(sink, 3, 0x3000n, [3]);
    await write(sink, 4, 0x4000n, [4]);
    await sink.commitPending();
    const written = lines(file).map((l) => JSON.parse(l) as { xid: number; commit_lsn: string });
    assert.deepEqual(written.map((l) => l.xid), [1, 3, 4], 'each transaction once, in commit order');
    assert.equal(sink.stats.skippedTransactions, 1);

    // A rollback (stop mid-batch) cuts lines that were not made durable, even those already appended.
    const big = Array.from({ length: 12_000 }, (_, i) => 100 + i); // over 1 MiB: appended before the commit
    sink.begin(txInfo(5, 0x5000n));
    for (const id of big) await sink.change(ins(id, 'x'.repeat(100)));
    assert.ok(readFileSync(file).length > 1 << 20, 'a large transaction is appended before its commit');
    await sink.rollback();
    assert.deepEqual(lines(file).map((l) => (JSON.parse(l) as { xid: number }).xid), [1, 3, 4]);
    assert.equal(sink.durableLsn, lsn(0x4030n));
    await sink.close();

    // A state file of another subscription, or a file that is not pgtide's, is refused.
    await assert.rejects(NdjsonStateFile.load(`${file}.state.json`, 'other'), /belongs to subscription "sub"/);
    writeFileSync(path.join(dir, 'foreign.ndjson'), '{"hello":1}\n');
    await assert.rejects(NdjsonSink.open({ ...options, path: path.join(dir, 'foreign.ndjson') }), (e: unknown) => e instanceof PgtideError && e.code === 'STATE_CORRUPT');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the state file is replaced atomically and keeps the guardian\'s facts', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-ndjson-'));
  try {
    const { file, state } = await fresh(dir);
    await state.markSlotCreating();
    await state.markSlotCreated(parseLsn('0/5000'), 1);
    await Promise.all([state.recordAck(parseLsn('0/6000')), state.setPosition({ commitLsn: parseLsn('0/5800'), endLsn: parseLsn('0/5830') as Lsn }, null), state.recordAck(parseLsn('0/5900'))]);
    const again = await NdjsonStateFile.load(`${file}.state.json`, 'sub');
    const row = await again.getSubscription();
    assert.equal(row?.slotState, 'created');
    assert.equal(row?.startLsn, parseLsn('0/5000'));
    assert.equal(row?.ackedLsn, parseLsn('0/6000'), 'an acknowledgement never moves back');
    assert.equal(again.position?.endLsn, parseLsn('0/5830'));
    assert.equal(existsSync(`${file}.state.json.tmp`), false, 'the temporary file was renamed into place');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config: target kind ndjson; what it cannot do is refused by name; postgres configs stay valid', () => {
  const source = { url: 'postgres://u@127.0.0.1:5432/a' };
  const plain = parseConfig({ source, target: { url: 'postgres://u@127.0.0.1:5433/b' } });
  assert.equal(plain.target.kind, 'postgres');
  assert.equal(plain.copy.enabled, true);
  const file = parseConfig({ source, target: { kind: 'ndjson', path: '/tmp/out.ndjson' } });
  assert.deepEqual(file.target, { kind: 'ndjson', path: '/tmp/out.ndjson' });
  assert.equal(file.copy.enabled, false, 'no initial copy unless asked');
  assert.equal(file.sequences.enabled, false);
  assert.throws(() => parseConfig({ source, target: { kind: 'ndjson', path: 'x' }, copy: { enabled: true } }), /copy\.enabled: the ndjson target has no initial copy/);
  assert.throws(() => parseConfig({ source, target: { kind: 'ndjson', path: 'x' }, sequences: { enabled: true } }), /sequences\.enabled: the ndjson target has no sequences/);
  assert.throws(() => parseConfig({ source, target: { kind: 'ndjson', path: '-' } }), /target\.statePath: is required when target\.path is -/);
  assert.throws(() => parseConfig({ source, target: { kind: 'ndjson', url: 'postgres://x' } }), /target/);
  assert.throws(() => postgresTargetUrl(file, 'pgtide sequences sync'), (e: unknown) => e instanceof PgtideError && e.code === 'UNSUPPORTED_FOR_TARGET' && /pgtide sequences sync needs a PostgreSQL target/.test(e.message));
});
