/**
 * The JSON a quarantined transaction is kept as (docs/quarantine.md), and the
 * UPDATE a delta column gets (docs/conflicts.md, "Delta columns").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RelationCache } from '../../src/changes/relation-cache.js';
import type { OpId } from '../../src/changes/change.js';
import { quarantinedChange, tablesOf } from '../../src/sinks/postgres/quarantine-record.js';
import { deltaLockStatement, deltaUpdateStatement } from '../../src/sinks/postgres/delta-statements.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import type { ReplicaIdentity } from '../../src/protocol/messages.js';
import { Metrics } from '../../src/control/metrics.js';

function relation(replicaIdentity: ReplicaIdentity) {
  return new RelationCache().update({
    tag: 'relation', xid: undefined, relationOid: 7, schema: 'public', name: 'acct', replicaIdentity,
    columns: [{ name: 'id', isKey: true, typeOid: 23, typeMod: -1 }, { name: 'balance', isKey: false, typeOid: 1700, typeMod: -1 }, { name: 'doc', isKey: false, typeOid: 25, typeMod: -1 }],
  });
}
const op = 1 as OpId;
const text = (value: string) => ({ kind: 'text', value }) as const;

test('quarantine record: key from the old row when sent, unchanged TOAST listed and left out, NULL as null', () => {
  const keyed = relation('default');
  assert.deepEqual(quarantinedChange({ kind: 'update', opId: op, relation: keyed, oldTuple: undefined, newTuple: [text('1'), { kind: 'null' }, { kind: 'unchanged' }] }), {
    kind: 'update', table: '"public"."acct"', identity: 'key', key: { id: '1' }, new: { id: '1', balance: null }, unchanged: ['doc'],
  });
  const moved = quarantinedChange({ kind: 'update', opId: op, relation: keyed, oldTuple: [text('1'), { kind: 'null' }, { kind: 'null' }], newTuple: [text('2'), text('5'), text('d')] });
  assert.ok(moved.kind === 'update');
  assert.deepEqual(moved.key, { id: '1' }, 'a changed key is found by its old value');
  assert.deepEqual(moved.new, { id: '2', balance: '5', doc: 'd' });
  assert.equal(moved.old, undefined, 'a key-only old tuple is not kept as a row of NULLs');
  const full = relation('full');
  assert.deepEqual(quarantinedChange({ kind: 'delete', opId: op, relation: full, oldTuple: [text('1'), text('9'), text('x')] }), {
    kind: 'delete', table: '"public"."acct"', identity: 'full', key: { id: '1', balance: '9', doc: 'x' }, old: { id: '1', balance: '9', doc: 'x' },
  });
  const changes = [quarantinedChange({ kind: 'insert', opId: op, relation: full, newTuple: [text('1'), text('9'), text('x')] }),
    quarantinedChange({ kind: 'truncate', opId: op, relations: [keyed], cascade: false, restartIdentity: true })];
  assert.deepEqual(tablesOf(changes), ['"public"."acct"']);
});

test('delta UPDATE: col = col + (new - old) for delta columns, the row found without them; none for other tables', () => {
  const rel = relation('full');
  const table: TargetTable = { relation: rel, columns: [
    { name: 'id', sqlType: 'integer', compareAsText: false, identityAlways: false },
    { name: 'balance', sqlType: 'numeric', compareAsText: false, identityAlways: false },
    { name: 'doc', sqlType: 'text', compareAsText: false, identityAlways: false },
  ], facts: { replicaTriggers: false, keyUnique: false, keyIndexExact: false } };
  const delta = new Map([['"public"."acct"', new Set(['balance'])]]);
  const statement = deltaUpdateStatement(table, [text('1'), text('10'), text('a')], [text('1'), text('12.5'), text('b')], delta)!;
  assert.equal(statement.text, 'UPDATE "public"."acct" SET "id" = $1::text::integer, "balance" = "balance" + ($2::text::numeric - $3::text::numeric), "doc" = $4::text::text'
    + ' WHERE (tableoid, ctid) = (SELECT f.tableoid, f.ctid FROM "public"."acct" AS f WHERE f."id" IS NOT DISTINCT FROM $5::text::integer AND f."doc" IS NOT DISTINCT FROM $6::text::text LIMIT 1)');
  assert.deepEqual(statement.params, ['1', '12.5', '10', 'b', '1', 'a']);
  assert.equal(deltaUpdateStatement(table, [text('1'), text('10'), text('a')], [text('1'), text('12.5'), text('b')], new Map()), undefined);
  // A NULL on either side has no difference: the new value is written.
  assert.match(deltaUpdateStatement(table, [text('1'), { kind: 'null' }, text('a')], [text('1'), text('3'), text('a')], delta)!.text, /"balance" = \$2::text::numeric/);
  // The lock sent before it: the same match, every matching row locked, one row back.
  const lock = deltaLockStatement(table, [text('1'), text('10'), text('a')], delta)!;
  assert.equal(lock.text, 'SELECT count(*) FROM (SELECT 1 FROM "public"."acct" AS f WHERE f."id" IS NOT DISTINCT FROM $1::text::integer AND f."doc" IS NOT DISTINCT FROM $2::text::text FOR UPDATE) AS locked');
  assert.deepEqual(lock.params, ['1', 'a']);
  assert.equal(deltaLockStatement(table, [text('1'), text('10'), text('a')], new Map()), undefined);
});

test('metrics: quarantined transactions are counted', async () => {
  const metrics = new Metrics('unit');
  metrics.quarantined();
  metrics.quarantined();
  const body = await metrics.registry.metrics();
  assert.match(body, /^pgtide_quarantined_total\{subscription="unit"\} 2$/m);
});
