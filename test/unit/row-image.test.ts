import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withUnchangedKeyFromOld } from '../../src/sinks/postgres/row-image.js';
import { RelationCache } from '../../src/changes/relation-cache.js';
import type { OpId, RowChange } from '../../src/changes/change.js';
import type { Tuple } from '../../src/protocol/messages.js';

const U = { kind: 'unchanged' as const };
const NULL = { kind: 'null' as const };
const t = (value: string) => ({ kind: 'text' as const, value });

function relationOf(identity: 'index' | 'full') {
  return new RelationCache().update({
    tag: 'relation', xid: undefined, relationOid: 7, schema: 'public', name: 'tk', replicaIdentity: identity,
    columns: [{ name: 'k', isKey: identity === 'index', typeOid: 25, typeMod: -1 }, { name: 'v', isKey: false, typeOid: 23, typeMod: -1 }, { name: 'big', isKey: false, typeOid: 25, typeMod: -1 }],
  });
}
const update = (identity: 'index' | 'full', oldTuple: Tuple | undefined, newTuple: Tuple): RowChange & { kind: 'update' } =>
  ({ kind: 'update', opId: 1 as OpId, relation: relationOf(identity), oldTuple, newTuple });

test('an unchanged-TOAST key column takes its value from the old key tuple; other TOAST columns stay unchanged', () => {
  const long = 'k'.repeat(2600);
  const completed = withUnchangedKeyFromOld(update('index', [t(long), NULL, NULL], [U, t('2'), U]));
  assert.deepEqual(completed.newTuple, [t(long), t('2'), U]);
});

test('nothing to complete: the same change object comes back', () => {
  const noOld = update('index', undefined, [t('a'), t('2'), U]);
  assert.equal(withUnchangedKeyFromOld(noOld), noOld);
  const keyPresent = update('index', [t('a'), NULL, NULL], [t('b'), t('2'), U]);
  assert.equal(withUnchangedKeyFromOld(keyPresent), keyPresent);
  // REPLICA IDENTITY FULL: unchanged columns are matched and left alone by the FULL statements.
  const full = update('full', [t('a'), t('1'), t('x')], [t('a'), t('2'), U]);
  assert.equal(withUnchangedKeyFromOld(full), full);
});
