import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RunPlanner, type Run } from '../../src/sinks/postgres/run-planner.js';
import { PLAIN_FOLD_STATEMENTS } from '../../src/sinks/postgres/net-effect.js';
import { RelationCache, type Relation } from '../../src/changes/relation-cache.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import type { OpId, RowChange, TransactionInfo } from '../../src/changes/change.js';
import type { Tuple } from '../../src/protocol/messages.js';
import type { Lsn } from '../../src/core/lsn.js';
import type { PgTimestamp } from '../../src/protocol/messages.js';

// The planning rules the apply writer relied on before run-planner.ts was taken out of it.

const cache = new RelationCache();
let oid = 0;
function tableOf(name: string, options: { replicaTriggers?: boolean; identity?: 'default' | 'full' } = {}): TargetTable {
  const relation = cache.update({
    tag: 'relation', xid: undefined, relationOid: ++oid, schema: 'public', name, replicaIdentity: options.identity ?? 'default',
    columns: [{ name: 'id', isKey: true, typeOid: 23, typeMod: -1 }, { name: 'v', isKey: false, typeOid: 25, typeMod: -1 }],
  });
  return {
    relation,
    columns: [{ name: 'id', sqlType: 'integer', compareAsText: false, identityAlways: false }, { name: 'v', sqlType: 'text', compareAsText: false, identityAlways: false }],
    facts: { replicaTriggers: options.replicaTriggers ?? false, keyUnique: true, keyIndexExact: true },
  };
}

const row = (id: string, v: string): Tuple => [{ kind: 'text', value: id }, { kind: 'text', value: v }];
let op = 0;
const ins = (relation: Relation, id: string, v = 'x'): RowChange & { kind: 'insert' } => ({ kind: 'insert', opId: ++op as OpId, relation, newTuple: row(id, v) });
const upd = (relation: Relation, id: string, v: string, oldId?: string): RowChange & { kind: 'update' } =>
  ({ kind: 'update', opId: ++op as OpId, relation, oldTuple: oldId ? row(oldId, '') : undefined, newTuple: row(id, v) });
const del = (relation: Relation, id: string): RowChange & { kind: 'delete' } => ({ kind: 'delete', opId: ++op as OpId, relation, oldTuple: [{ kind: 'text', value: id }, { kind: 'null' }] });
const tx = (xid: number): TransactionInfo => ({ xid, commitLsn: BigInt(xid * 100) as Lsn, commitTime: 0n as PgTimestamp, origin: undefined, streamed: false });

const planner = (options: { foldable?: boolean; noFold?: readonly string[]; uniqueChecks?: boolean } = {}): RunPlanner => new RunPlanner({
  noFoldTables: new Set(options.noFold ?? []),
  conflicts: { foldable: () => options.foldable ?? true, foldStatements: () => PLAIN_FOLD_STATEMENTS },
  uniqueChecks: () => options.uniqueChecks ?? false,
});

/** A run as kind and row count, plus what tells runs of one kind apart. */
function shape(run: Run): string {
  switch (run.kind) {
    case 'insert': return `insert:${run.rows.length}:${run.sources.length}`;
    case 'update': return `update:${run.rows.length}:${run.maskKey}`;
    case 'delete': return `delete:${run.keys.length}`;
    case 'counted': return `counted:${run.counted.operation}:${run.full ? 'full' : 'folded'}`;
  }
}

test('unfolded: consecutive changes of one kind share a run; a key twice, a changed key or another kind start a new one', () => {
  const table = tableOf('t');
  const queue = planner().open(table);
  const t1 = tx(1);
  const t2 = tx(2);
  const r = table.relation;
  for (const change of [ins(r, '1'), ins(r, '2'), upd(r, '1', 'a'), upd(r, '2', 'b'), upd(r, '1', 'c'), upd(r, '5', 'd', '4'), upd(r, '3', 'e')]) {
    assert.equal(queue.add(change, t1, false), false);
  }
  for (const change of [del(r, '1'), del(r, '2'), ins(r, '9')]) assert.equal(queue.add(change, t2, false), false);
  const { runs, span } = queue.take();
  // The key-changing UPDATE sets the key column too and is marked so nothing joins it.
  assert.deepEqual(runs.map(shape), ['insert:2:2', 'update:2:1', 'update:1:1', 'update:1:0,1!', 'update:1:1', 'delete:2', 'insert:1:1']);
  assert.deepEqual([span?.first.xid, span?.last.xid], [1, 2]);
  const empty = queue.take();
  assert.deepEqual([empty.runs.length, empty.span], [0, undefined]);
});

test('folded: a key\'s changes fold; a change the fold cannot express sends the fold first, then runs in order', () => {
  const table = tableOf('f');
  const queue = planner().open(table);
  const r = table.relation;
  const t = tx(3);
  assert.equal(queue.add(ins(r, '1', 'a'), t, true), true);
  assert.equal(queue.add(upd(r, '1', 'b'), t, true), true);
  assert.equal(queue.add(upd(r, '2', 'c'), t, true), true);
  // A key change is not foldable: the fold drains into runs ahead of it.
  assert.equal(queue.add(upd(r, '8', 'k', '7'), t, true), false);
  // The transaction may not fold (exact replay): runs even on a foldable table.
  assert.equal(queue.add(del(r, '2'), t, false), false);
  assert.equal(queue.add(ins(r, '3', 'z'), t, true), true);
  const { runs } = queue.take();
  assert.deepEqual(runs.map(shape), ['insert:1:0', 'counted:UPDATE:folded', 'update:1:0,1!', 'delete:1', 'insert:1:0']);
  const first = runs[0];
  assert.ok(first?.kind === 'insert');
  assert.deepEqual(first.rows[0]?.map((v) => (v.kind === 'text' ? v.value : v.kind)), ['1', 'b']);
});

test('which tables fold: keyed, no replica triggers, policy allows, not in noFoldTables, no unique checks', () => {
  const foldsIn = (p: RunPlanner, table: TargetTable): boolean => p.open(table).add(ins(table.relation, '1'), tx(1), true);
  assert.equal(foldsIn(planner(), tableOf('a')), true);
  assert.equal(foldsIn(planner(), tableOf('b', { identity: 'full' })), false);
  assert.equal(foldsIn(planner(), tableOf('c', { replicaTriggers: true })), false);
  assert.equal(foldsIn(planner({ foldable: false }), tableOf('d')), false);
  const e = tableOf('e');
  assert.equal(foldsIn(planner({ noFold: [e.relation.qualifiedName] }), e), false);
  assert.equal(foldsIn(planner({ uniqueChecks: true }), tableOf('g')), false);
});

test('replica triggers: switching into or out of such a table is a barrier, and its updates and deletes run one at a time', () => {
  const p = planner();
  const plain = p.open(tableOf('p'));
  const other = p.open(tableOf('o'));
  const triggered = p.open(tableOf('r', { replicaTriggers: true }));
  assert.deepEqual([p.switchTo(plain), p.switchTo(plain), p.switchTo(other), p.switchTo(triggered), p.switchTo(triggered), p.switchTo(plain)], [false, false, false, true, false, true]);
  const r = triggered.table.relation;
  for (const change of [upd(r, '1', 'a'), upd(r, '2', 'b'), del(r, '1'), del(r, '2'), ins(r, '3'), ins(r, '4')]) triggered.add(change, tx(1), true);
  assert.deepEqual(triggered.take().runs.map(shape), ['update:1:1', 'update:1:1', 'delete:1', 'delete:1', 'insert:2:2']);
});

test('a new definition of a table: current() misses, superseded() finds the old queue, the new queue goes last', () => {
  const p = planner();
  const a = tableOf('x');
  const b = tableOf('y');
  const qa = p.open(a);
  const qb = p.open(b);
  assert.equal(p.current(a.relation), qa);
  const changed = cache.update({
    tag: 'relation', xid: undefined, relationOid: a.relation.oid, schema: 'public', name: 'x', replicaIdentity: 'default',
    columns: [{ name: 'id', isKey: true, typeOid: 23, typeMod: -1 }, { name: 'v', isKey: false, typeOid: 25, typeMod: -1 }, { name: 'w', isKey: false, typeOid: 25, typeMod: -1 }],
  });
  assert.equal(p.current(changed), undefined);
  assert.equal(p.superseded(changed), qa);
  const qa2 = p.open({ ...a, relation: changed });
  assert.deepEqual([...p.queues()], [qb, qa2]);
  p.clear();
  assert.deepEqual([...p.queues()], []);
  assert.equal(p.switchTo(qb), false);
});
