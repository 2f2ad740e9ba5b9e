import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NetEffectTable } from '../../src/sinks/postgres/net-effect.js';
import { RelationCache } from '../../src/changes/relation-cache.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import type { OpId, RowChange } from '../../src/changes/change.js';
import type { Tuple } from '../../src/protocol/messages.js';
import type { FoldStep } from '../../src/sinks/postgres/net-effect.js';

/** What a step sends: the statement's parameters, or for inserts the rows' text values. */
const sent = (step: FoldStep | undefined): unknown =>
  step?.operation === 'INSERT' ? step.rows.map((r) => r.map((v) => (v.kind === 'text' ? v.value : v.kind))) : step?.statement.params;

const cache = new RelationCache();
const relation = cache.update({
  tag: 'relation', xid: undefined, relationOid: 1, schema: 'public', name: 't', replicaIdentity: 'default',
  columns: [{ name: 'id', isKey: true, typeOid: 23, typeMod: -1 }, { name: 'v', isKey: false, typeOid: 25, typeMod: -1 }, { name: 'big', isKey: false, typeOid: 25, typeMod: -1 }],
});
const table: TargetTable = { relation, columns: [{ name: 'id', sqlType: 'integer', compareAsText: false, identityAlways: false }, { name: 'v', sqlType: 'text', compareAsText: false, identityAlways: false }, { name: 'big', sqlType: 'text', compareAsText: false, identityAlways: false }], facts: { replicaTriggers: false, keyUnique: true, keyIndexExact: true } };
const row = (id: string, v: string, big: string | 'u' = 'B'): Tuple => [{ kind: 'text', value: id }, { kind: 'text', value: v }, big === 'u' ? { kind: 'unchanged' } : { kind: 'text', value: big }];
let op = 0;
const ins = (id: string, v: string): RowChange & { kind: 'insert' } => ({ kind: 'insert', opId: ++op as OpId, relation, newTuple: row(id, v) });
const upd = (id: string, v: string, big: string | 'u' = 'u', oldId?: string): RowChange & { kind: 'update' } => ({ kind: 'update', opId: ++op as OpId, relation, oldTuple: oldId ? row(oldId, '', 'u') : undefined, newTuple: row(id, v, big) });
const del = (id: string): RowChange & { kind: 'delete' } => ({ kind: 'delete', opId: ++op as OpId, relation, oldTuple: [{ kind: 'text', value: id }, { kind: 'null' }, { kind: 'null' }] });

test('insert then updates fold into one insert; unchanged TOAST keeps the inserted value', () => {
  const fold = new NetEffectTable(table);
  assert.ok(fold.add(ins('1', 'a')));
  assert.ok(fold.add(upd('1', 'b')));
  assert.ok(fold.add(upd('1', 'c')));
  const out = fold.drain();
  assert.equal(out.length, 1);
  assert.equal(out[0]!.operation, 'INSERT');
  assert.deepEqual(sent(out[0]), [['1', 'c', 'B']]);
  assert.equal(fold.size, 0);
});

test('insert then delete leaves nothing; delete then insert deletes first', () => {
  const fold = new NetEffectTable(table);
  fold.add(ins('1', 'a'));
  fold.add(del('1'));
  fold.add(del('2'));
  fold.add(ins('2', 'again'));
  const out = fold.drain();
  assert.deepEqual(out.map((s) => s.operation), ['DELETE', 'INSERT']);
  assert.deepEqual(sent(out[0]), ['{"2"}']);
  assert.deepEqual(sent(out[1]), [['2', 'again', 'B']]);
});

test('many updates become one per key, grouped by the columns they set', () => {
  const fold = new NetEffectTable(table);
  for (let i = 0; i < 5; i++) fold.add(upd('7', `v${i}`));
  fold.add(upd('8', 'x', 'newbig'));
  const out = fold.drain();
  assert.deepEqual(out.map((s) => [s.operation, s.operation === 'INSERT' ? 0 : s.expectedRows]), [['UPDATE', 1], ['UPDATE', 1]]);
  assert.deepEqual(sent(out[0]), ['{"7"}', '{"v4"}']);
  assert.deepEqual(sent(out[1]), ['{"8"}', '{"x"}', '{"newbig"}']);
});

test('update then delete is a delete', () => {
  const fold = new NetEffectTable(table);
  fold.add(upd('3', 'x'));
  fold.add(del('3'));
  assert.deepEqual(fold.drain().map((s) => s.operation), ['DELETE']);
});

test('what cannot be folded is refused: key change, double insert, change after delete', () => {
  const fold = new NetEffectTable(table);
  assert.equal(fold.add(upd('2', 'x', 'u', '1')), false, 'key change');
  assert.ok(fold.add(ins('5', 'a')));
  assert.equal(fold.add(ins('5', 'b')), false, 'second insert of a live key');
  assert.ok(fold.add(del('6')));
  assert.equal(fold.add(upd('6', 'z')), false, 'update of a deleted key');
});
