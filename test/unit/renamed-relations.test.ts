import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RelationCache, type Relation } from '../../src/changes/relation-cache.js';
import type { OpId, RowChange } from '../../src/changes/change.js';
import { RenamedRelations } from '../../src/apply/renamed-relations.js';

const cache = new RelationCache();
const describe = (oid: number, schema: string, name: string): Relation =>
  cache.update({ tag: 'relation', xid: undefined, relationOid: oid, schema, name, replicaIdentity: 'default', columns: [{ name: 'id', isKey: true, typeOid: 23, typeMod: -1 }] });
const insert = (relation: Relation): RowChange => ({ kind: 'insert', opId: 1 as OpId, relation, newTuple: [{ kind: 'text', value: '1' }] });

test('rows still described under a renamed schema get the new name until the source describes the table again', () => {
  const renamed = new RenamedRelations();
  const old = describe(10, 'app', 't');
  const other = describe(11, 'public', 'u');
  const before = insert(old);
  assert.equal(renamed.rename(before), before, 'nothing noted: the same change back');
  renamed.note(10, { schema: 'app', name: 't' }, { schema: 'app2', name: 't' });
  const first = renamed.rename(insert(old));
  assert.ok(first.kind === 'insert');
  assert.equal(first.relation.schema, 'app2');
  assert.equal(first.relation.qualifiedName, '"app2"."t"');
  assert.ok(first.relation.version < 0, 'a version no Relation message has (writers cache statements by version)');
  assert.deepEqual(first.relation.columns, old.columns);
  const second = renamed.rename(insert(old));
  assert.ok(second.kind === 'insert');
  assert.equal(second.relation, first.relation, 'one renamed copy per Relation');
  const untouched = insert(other);
  assert.equal(renamed.rename(untouched), untouched);
  const truncate: RowChange = { kind: 'truncate', opId: 2 as OpId, relations: [old, other], cascade: false, restartIdentity: false };
  const t = renamed.rename(truncate);
  assert.ok(t.kind === 'truncate');
  assert.deepEqual(t.relations.map((r) => r.qualifiedName), ['"app2"."t"', '"public"."u"']);
  // PostgreSQL 18 (or any later change to the table) sends the Relation again with the new name: left as it is, and forgotten.
  const fresh = describe(10, 'app2', 't');
  const row = insert(fresh);
  assert.equal(renamed.rename(row), row);
  assert.equal(renamed.size, 0);
});

test('two renames in a row before the source describes the table again: from its first name to its last', () => {
  const renamed = new RenamedRelations();
  const old = describe(20, 'a', 't');
  renamed.note(20, { schema: 'a', name: 't' }, { schema: 'b', name: 't' });
  renamed.note(20, { schema: 'b', name: 't' }, { schema: 'c', name: 't' });
  const row = renamed.rename(insert(old));
  assert.ok(row.kind === 'insert');
  assert.equal(row.relation.qualifiedName, '"c"."t"');
});
