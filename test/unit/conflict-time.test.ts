/**
 * The settings of the time-based policies and origin-differs detection
 * (config → ConflictSettings → which statement a run gets). Their behaviour on
 * a real server, and the SQL of the decision, are covered by
 * test/integration/conflicts-time.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { ConfigError, PgtideError } from '../../src/core/errors.js';
import { conflictSettings } from '../../src/control/conflict-config.js';
import { checksOrigin, judgesByTime, needsCommitTimestamps } from '../../src/apply/conflict-time.js';
import { ConflictApply } from '../../src/sinks/postgres/conflict-apply.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import { idValueTable, row, tx } from '../support/conflict-table.js';
import { tieBreakProblems } from '../../src/control/tie-break-check.js';
import { OriginMatcher, originPolicy } from '../../src/apply/origin-policy.js';

const base = { source: { url: 'postgres://u:s3cret@127.0.0.1:5432/a' }, target: { url: 'postgres://u:s3cret@127.0.0.1:5433/b' } };

test('conflicts: time-based policies, detectOriginDiffers and nodeOrder are read; a writer listed twice is refused', () => {
  const config = parseConfig({ ...base, conflicts: { policy: 'skip', tables: { 'public.a': 'last_update_wins', 'public.b': 'first_update_wins' }, nodeOrder: ['ab', 'local'] } });
  const settings = conflictSettings(config.conflicts);
  assert.deepEqual(settings.nodeOrder, ['ab', 'local']);
  assert.equal(settings.detectOriginDiffers, false);
  assert.equal(needsCommitTimestamps(settings), true, 'a time-based table needs commit timestamps');
  assert.equal(judgesByTime(settings), true);
  assert.equal(checksOrigin(settings, 'skip'), false, 'skip tables are not checked without detectOriginDiffers');
  assert.equal(checksOrigin(settings, 'last_update_wins'), true);

  const detect = conflictSettings(parseConfig({ ...base, conflicts: { policy: 'apply_remote', detectOriginDiffers: true } }).conflicts);
  assert.equal(needsCommitTimestamps(detect), true);
  assert.equal(judgesByTime(detect), false, 'origin differences alone need no commit time of the change: streamed apply stays on');
  assert.equal(checksOrigin(detect, 'apply_remote'), true);
  assert.equal(checksOrigin(detect, 'error'), false, 'tables under error are not checked for origin differences');

  assert.equal(needsCommitTimestamps(conflictSettings(parseConfig(base).conflicts)), false);
  assert.throws(() => parseConfig({ ...base, conflicts: { nodeOrder: ['a', 'b', 'a'] } }), (e: unknown) => e instanceof ConfigError && /"a" is listed twice/.test(e.message));
});

const table = (replicaIdentity: 'default' | 'full'): TargetTable => idValueTable({ replicaIdentity });

test('a time-based policy: runs read the local row\'s origin and commit time, are not folded, and need track_commit_timestamp', () => {
  const settings = conflictSettings(parseConfig({ ...base, conflicts: { policy: 'last_update_wins' } }).conflicts);
  assert.throws(() => new ConflictApply(settings, 'sub', 'none', 'pgtide_sub_1'),
    (e: unknown) => e instanceof PgtideError && e.code === 'COMMIT_TIMESTAMP_OFF' && /track_commit_timestamp = on/.test(e.message) && /restart/.test(e.message));
  const apply = new ConflictApply(settings, 'sub', 'origin', 'pgtide_sub_1');
  const t = table('default');
  assert.equal(apply.foldable(t), false, 'each row keeps its own source transaction');
  const update = apply.update(t, [1], [{ key: ['1'], newTuple: row('1', 'x') }], [tx]);
  assert.ok(update?.logs);
  assert.match(update.statement.text, /FOR UPDATE OF t\)/, 'the local rows are locked as they are judged');
  assert.match(update.statement.text, /pg_xact_commit_timestamp_origin\(v\.lxmin\)/);
  assert.match(update.statement.text, /'update_origin_differs'/);
  assert.ok(update.statement.params.includes('pgtide_sub_1'), 'rows of the edge\'s own origin are told apart');
  const del = apply.delete(t, [['1']], [tx]);
  assert.ok(del?.logs);
  assert.match(del.statement.text, /'delete_origin_differs'/);
  const insert = apply.insert(t, [row('1', 'x')], [tx]);
  assert.ok(insert);
  assert.match(insert.text, /'insert_exists'/);
  assert.match(insert.text, /pg_xact_commit_timestamp_origin/);
  // REPLICA IDENTITY FULL: not compared by time; a missing row is logged as skip.
  const full = table('full');
  const step = apply.full(full, { statement: { text: 'UPDATE "public"."t" AS t SET v = $1', params: ['x'] }, expectedRows: 1, operation: 'UPDATE' },
    { oldTuple: row('1', 'a'), newTuple: row('1', 'x'), source: tx });
  assert.ok(step?.logs);
  assert.match(step.statement.text, /'update_missing', 'skip'/);
});

test('skip with detectOriginDiffers checks origins but ranks no writers; without it skip keeps the earlier statement', () => {
  const t = table('default');
  const detect = new ConflictApply(conflictSettings(parseConfig({ ...base, conflicts: { policy: 'skip', detectOriginDiffers: true } }).conflicts), 'sub', 'origin', 'pgtide_sub_1');
  const checked = detect.update(t, [1], [{ key: ['1'], newTuple: row('1', 'x') }], [tx]);
  assert.ok(checked?.logs);
  assert.match(checked.statement.text, /'update_origin_differs'/);
  assert.doesNotMatch(checked.statement.text, /array_position/, 'the tie-break order is only for time-based policies');
  const plain = new ConflictApply(conflictSettings(parseConfig({ ...base, conflicts: { policy: 'skip' } }).conflicts), 'sub', 'none', 'pgtide_sub_1');
  const unchecked = plain.update(t, [1], [{ key: ['1'], newTuple: row('1', 'x') }], [tx]);
  assert.ok(unchecked?.logs);
  assert.doesNotMatch(unchecked.statement.text, /origin_differs/);
});

test('pgtide check: tie-break orders that disagree, or a two-way pair that does not rank both writers, are problems', () => {
  const A = { id: 'a', label: 'A' };
  const B = { id: 'b', label: 'B' };
  const edge = (subscription: string, source: typeof A, target: typeof A, nodeOrder: string[] | undefined, policy = 'last_update_wins') => ({
    edge: { label: subscription, subscription, source, target, origins: new OriginMatcher(originPolicy('none')), originName: `pgtide_${subscription}_1` },
    config: parseConfig({ ...base, name: subscription, conflicts: { policy, ...(nodeOrder ? { nodeOrder } : {}) } }),
  });
  // A wins ties on both nodes: at B (target of ab) ab before local, at A (target of ba) local before ba.
  assert.deepEqual(tieBreakProblems([edge('ab', A, B, ['ab', 'local']), edge('ba', B, A, ['local', 'ba'])]), []);
  const flipped = tieBreakProblems([edge('ab', A, B, ['ab', 'local']), edge('ba', B, A, ['ba', 'local'])]);
  assert.equal(flipped.length, 1);
  assert.match(flipped[0]!, /ba ranks B before A on equal commit times, ab the other way round/);
  const missing = tieBreakProblems([edge('ab', A, B, undefined), edge('ba', B, A, ['local', 'ba'])]);
  assert.equal(missing.length, 1);
  assert.match(missing[0]!, /ab uses a time-based policy in a two-way pair but its conflicts\.nodeOrder does not rank both "local" and "ab"/);
  assert.deepEqual(tieBreakProblems([edge('ab', A, B, undefined, 'skip'), edge('ba', B, A, undefined, 'skip')]), [], 'no time-based policy: no tie-break needed');
  assert.deepEqual(tieBreakProblems([edge('ab', A, B, undefined)]), [], 'one way: ties keep the target\'s row, nothing to converge with');
});
