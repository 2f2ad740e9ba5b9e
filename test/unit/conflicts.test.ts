/**
 * The conflict settings (config → per-table policy), the statements each
 * policy gets, and the metrics counter. The statements' behaviour on a real
 * server is covered by test/integration/conflicts.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { conflictSettings, deltaColumnSettings } from '../../src/control/conflict-config.js';
import { policyFor } from '../../src/apply/conflict-policy.js';
import { ConflictApply } from '../../src/sinks/postgres/conflict-apply.js';
import { RelationCache } from '../../src/changes/relation-cache.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import { idValueTable, row, tx } from '../support/conflict-table.js';
import { Metrics } from '../../src/control/metrics.js';
import { deleteFullStatement } from '../../src/sinks/postgres/statements.js';

const base = { source: { url: 'postgres://u:s3cret@127.0.0.1:5432/a' }, target: { url: 'postgres://u:s3cret@127.0.0.1:5433/b' } };

test('conflicts: error by default; a pipeline policy and per-table overrides by qualified name', () => {
  assert.deepEqual(parseConfig(base).conflicts, { policy: 'error', tables: {}, detectOriginDiffers: false, tombstones: false, tombstoneRetention: 3_600_000, deltaColumns: {} });
  const config = parseConfig({ ...base, conflicts: { policy: 'skip', tables: { 'public.a': 'apply_remote', '"My S"."T"': 'error' } } });
  const settings = conflictSettings(config.conflicts);
  assert.equal(policyFor(settings, '"public"."a"'), 'apply_remote');
  assert.equal(policyFor(settings, '"My S"."T"'), 'error');
  assert.equal(policyFor(settings, '"public"."other"'), 'skip');
});

test('conflicts: an unknown policy is refused by name', () => {
  assert.throws(() => parseConfig({ ...base, conflicts: { policy: 'newest' } }), (e: unknown) => e instanceof ConfigError && /conflicts\.policy: "newest" is not a conflict policy/.test(e.message));
  assert.throws(() => parseConfig({ ...base, conflicts: { tables: { 'a.b.c': 'skip' } } }), (e: unknown) => e instanceof ConfigError && /not a table name/.test(e.message));
});

test('conflicts.deltaColumns: keyed by qualified name; a bad table name or an empty column list is refused', () => {
  const config = parseConfig({ ...base, conflicts: { deltaColumns: { 'public.acct': ['balance', 'hits'], '"My S"."T"': ['n'] } } });
  const delta = deltaColumnSettings(config.conflicts);
  assert.deepEqual([...delta.keys()], ['"public"."acct"', '"My S"."T"']);
  assert.deepEqual([...delta.get('"public"."acct"')!], ['balance', 'hits']);
  assert.throws(() => parseConfig({ ...base, conflicts: { deltaColumns: { 'a.b.c': ['n'] } } }), (e: unknown) => e instanceof ConfigError && /deltaColumns.*not a table name/.test(e.message));
  assert.throws(() => parseConfig({ ...base, conflicts: { deltaColumns: { 'public.acct': [] } } }), (e: unknown) => e instanceof ConfigError && /deltaColumns/.test(e.message));
});

test('apply.onDeterministicError: stop by default; quarantine; anything else refused', () => {
  assert.equal(parseConfig(base).apply.onDeterministicError, 'stop');
  assert.equal(parseConfig({ ...base, apply: { onDeterministicError: 'quarantine' } }).apply.onDeterministicError, 'quarantine');
  assert.throws(() => parseConfig({ ...base, apply: { onDeterministicError: 'skip' } }), (e: unknown) => e instanceof ConfigError && /onDeterministicError/.test(e.message));
});

const table = (keyUnique: boolean): TargetTable => idValueTable({ keyUnique });

test('error: keyed UPDATE/DELETE runs stop on a missing row inside the statement; INSERT stays plain (23505 stops it)', () => {
  const apply = new ConflictApply(undefined, 'sub', 'none');
  const t = table(true);
  assert.equal(apply.foldable(t), true);
  const del = apply.delete(t, [['1'], ['2']], [tx, tx]);
  assert.ok(del && !del.logs);
  assert.match(del.counted.statement.text, /pgtide\.conflict_stop\('delete_missing'/);
  assert.equal(del.counted.expectedRows, 0, 'the statement checks itself; the writer counts nothing');
  const upd = apply.update(t, [1], [{ key: ['1'], newTuple: row('1', 'x') }], [tx]);
  assert.ok(upd && !upd.logs);
  assert.match(upd.counted.statement.text, /pgtide\.conflict_stop\('update_missing'/);
  assert.equal(apply.insert(t, [row('1', 'x')], [tx]), undefined);
  // Folded runs get the same checks.
  assert.match(apply.foldStatements(t).deleteByKey(t, [['1']]).statement.text, /conflict_stop\('delete_missing'/);
  // No unique index on the key: a key may match several rows, so no per-key check.
  assert.equal(apply.delete(table(false), [['1']], [tx]), undefined);
});

test('skip and apply_remote: unfolded runs whose statements log each conflict with its source transaction', () => {
  const apply = new ConflictApply({ policy: 'skip', tables: new Map([['"public"."t"', 'apply_remote']]) }, 'sub', 'origin');
  const t = table(true);
  assert.equal(apply.foldable(t), false);
  const insert = apply.insert(t, [row('1', 'x'), row('2', 'y')], [tx, { ...tx, xid: 901 }]);
  assert.ok(insert);
  assert.match(insert.text, /ON CONFLICT \("id"\) DO UPDATE SET "v" = EXCLUDED\."v"/);
  assert.match(insert.text, /INSERT INTO pgtide\.conflict_log/);
  assert.match(insert.text, /pg_xact_commit_timestamp_origin\(t\.xmin\)/);
  assert.equal(insert.params.at(-1), 'sub');
  assert.ok(insert.params.includes('{"900","901"}'), 'per-row source xids');
  assert.ok(insert.params.includes('{"0/16B3748","0/16B3748"}'), 'per-row commit LSNs');
  const skipping = new ConflictApply({ policy: 'skip', tables: new Map() }, 'sub', 'none').insert(t, [row('1', 'x')], [tx]);
  assert.match(skipping?.text ?? '', /ON CONFLICT DO NOTHING RETURNING "id"/, 'skip keeps the local row whatever unique index the remote row meets');
  const upd = apply.update(t, [1], [{ key: ['1'], newTuple: row('1', 'x') }], [tx]);
  assert.ok(upd?.logs);
  assert.match(upd.statement.text, /INSERT INTO "public"\."t" \("id", "v"\)/, 'a complete row is inserted when missing');
  assert.match(upd.statement.text, /'update_missing', 'apply_remote'/);
  // A row with an unchanged TOAST value is incomplete: logged and skipped.
  const partial = apply.update(t, [], [{ key: ['1'], newTuple: [{ kind: 'text', value: '1' }, { kind: 'unchanged' }] }], [tx]);
  assert.ok(partial?.logs);
  assert.match(partial.statement.text, /'update_missing', 'skip'/);
});

test('REPLICA IDENTITY FULL: the one-row statement is checked (error) or logged (skip), keyed by the old row; a row move is left alone', () => {
  const relation = new RelationCache().update({
    tag: 'relation', xid: undefined, relationOid: 8, schema: 'public', name: 'f', replicaIdentity: 'full',
    columns: [{ name: 'a', isKey: false, typeOid: 23, typeMod: -1 }, { name: 'b', isKey: false, typeOid: 25, typeMod: -1 }],
  });
  const full: TargetTable = { relation, columns: [
    { name: 'a', sqlType: 'integer', compareAsText: false, identityAlways: false },
    { name: 'b', sqlType: 'text', compareAsText: false, identityAlways: false },
  ], facts: { replicaTriggers: false, keyUnique: false, keyIndexExact: false } };
  const counted = { statement: deleteFullStatement(full, row('2', 'y')), expectedRows: 1, operation: 'DELETE' as const };
  const change = { oldTuple: row('2', 'y'), newTuple: undefined, source: tx };
  const stop = new ConflictApply(undefined, 'sub', 'none').full(full, counted, change);
  assert.ok(stop && !stop.logs);
  assert.match(stop.counted.statement.text, /^WITH u AS \(DELETE .* RETURNING 1\)/s);
  assert.match(stop.counted.statement.text, /conflict_stop\('delete_missing'/);
  assert.equal(stop.counted.statement.params.at(-1), '{"a":"2","b":"y"}');
  const logged = new ConflictApply({ policy: 'skip', tables: new Map() }, 'sub', 'none').full(full, counted, change);
  assert.ok(logged?.logs);
  assert.match(logged.statement.text, /'delete_missing', 'skip'/);
  const move = { statement: { text: 'WITH old AS (DELETE FROM x RETURNING *) INSERT INTO x SELECT * FROM old', params: [] }, expectedRows: 1, operation: 'UPDATE' as const };
  assert.equal(new ConflictApply(undefined, 'sub', 'none').full(full, move, { ...change, newTuple: row('2', 'z') }), undefined);
});

test('metrics: conflicts are counted by kind, resolution and table', async () => {
  const metrics = new Metrics('unit');
  metrics.conflicts([{ kind: 'insert_exists', resolution: 'skip', table: '"public"."t"' }, { kind: 'insert_exists', resolution: 'skip', table: '"public"."t"' }]);
  const body = await metrics.registry.metrics();
  const line = body.split('\n').find((l) => l.startsWith('pgtide_conflicts_total{'));
  assert.ok(line, body);
  assert.match(line, /kind="insert_exists"/);
  assert.match(line, /resolution="skip"/);
  assert.match(line, /table="\\"public\\"\.\\"t\\""/);
  assert.match(line, / 2$/);
});
