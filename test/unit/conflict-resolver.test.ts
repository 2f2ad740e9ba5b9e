/**
 * The custom resolver's pure parts: the config shapes and their refusals,
 * which results are valid decisions for which conflict, the probe statements
 * a `custom` table gets (optimistic ones counting their conflicts), which runs
 * are awaited after replays, the commit time's text form, and `conflicts.detect:
 * false`. Behaviour on a real server: test/integration/conflicts-resolver.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { conflictSettings } from '../../src/control/conflict-config.js';
import { policyFor, resolverFor, type NamedResolver } from '../../src/apply/conflict-policy.js';
import { checkDecision, type ResolverConflict } from '../../src/apply/conflict-resolver.js';
import { ConflictApply } from '../../src/sinks/postgres/conflict-apply.js';
import { isoMicros, probeStatement, runCommitLsn } from '../../src/sinks/postgres/resolver-apply.js';
import { ResolverModes, ResolverReplayError } from '../../src/sinks/postgres/resolver-replay.js';
import { capturingLogger } from '../support/replication.js';
import { PLAIN_FOLD_STATEMENTS } from '../../src/sinks/postgres/net-effect.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import { idValueTable, row, tx } from '../support/conflict-table.js';
import { lsn } from '../../src/core/lsn.js';

const base = { source: { url: 'postgres://u:s3cret@127.0.0.1:5432/a' }, target: { url: 'postgres://u:s3cret@127.0.0.1:5433/b' } };
const refused = (conflicts: unknown, message: RegExp): void => {
  assert.throws(() => parseConfig({ ...base, conflicts }), (e: unknown) => e instanceof ConfigError && message.test(e.message));
};

test('config: custom for the pipeline or per table, each table with its own module or the pipeline\'s', () => {
  const config = parseConfig({ ...base, conflicts: { policy: 'skip', resolver: '/r/main.mjs', tables: { 'public.a': 'custom', 'public.b': { resolver: '/r/b.mjs' }, 'public.c': { policy: 'custom', resolver: '/r/c.mjs' } } } });
  const main: NamedResolver = { module: '/r/main.mjs', resolve: () => 'skip' };
  const b: NamedResolver = { module: '/r/b.mjs', resolve: () => 'apply_remote' };
  const c: NamedResolver = { module: '/r/c.mjs', resolve: () => 'error' };
  const settings = conflictSettings(config.conflicts, { byPath: new Map([['/r/main.mjs', main], ['/r/b.mjs', b], ['/r/c.mjs', c]]) });
  assert.equal(policyFor(settings, '"public"."a"'), 'custom');
  assert.equal(policyFor(settings, '"public"."b"'), 'custom');
  assert.equal(policyFor(settings, '"public"."other"'), 'skip');
  assert.equal(resolverFor(settings, '"public"."a"'), main);
  assert.equal(resolverFor(settings, '"public"."b"'), b);
  assert.equal(resolverFor(settings, '"public"."c"'), c);
});

test('config: custom without a module, a module under another policy, detect: false with a resolving policy are refused by name', () => {
  refused({ policy: 'custom' }, /conflicts\.resolver: policy custom needs a resolver module/);
  refused({ tables: { 'public.a': 'custom' } }, /conflicts\.tables\.public\.a: policy custom needs a resolver module/);
  refused({ tables: { 'public.a': { policy: 'skip', resolver: './r.mjs' } } }, /a resolver decides only under policy custom/);
  refused({ tables: { 'public.a': { resolver: './r.mjs', extra: 1 } } }, /Unrecognized key: "extra"/);
  refused({ tables: { 'public.a': 7 } }, /write a policy \(error, skip, apply_remote, custom\) or \{ resolver: \.\/module\.js \}/);
  refused({ detect: false, tables: { 'public.a': 'skip' } }, /detect: false turns conflict detection off/);
  assert.equal(parseConfig({ ...base, conflicts: { detect: false } }).conflicts.detect, false);
});

const conflict = (kind: ResolverConflict['kind'], remoteNew: Record<string, string | null> | null): ResolverConflict => ({
  kind, table: { schema: 'public', name: 't' }, key: { id: '1' }, remote: { old: kind === 'insert_exists' ? null : { id: '1' }, new: remoteNew },
  local: kind === 'insert_exists' ? { row: { id: '1', v: 'l' }, origin: null, commitTime: null } : null,
  source: { xid: 5, commitLsn: '0/1', commitTime: null, origin: null },
});
const COLUMNS = ['id', 'v'];

test('decisions: the shorthands and objects are accepted; anything else is refused with what was wrong', () => {
  const ins = conflict('insert_exists', { id: '1', v: 'r' });
  assert.deepEqual(checkDecision('skip', ins, COLUMNS, ['id']), { ok: { action: 'skip' } });
  assert.deepEqual(checkDecision({ action: 'apply_remote' }, ins, COLUMNS, ['id']), { ok: { action: 'apply_remote' } });
  assert.deepEqual(checkDecision({ action: 'error', reason: 3 }, ins, COLUMNS, ['id']), { ok: { action: 'error', reason: '3' } });
  assert.deepEqual(checkDecision({ action: 'merge', row: { v: 'm', id: '1' } }, ins, COLUMNS, ['id']), { ok: { action: 'merge', row: { v: 'm', id: '1' } } });
  const problem = (value: unknown, c = ins): string => {
    const checked = checkDecision(value, c, COLUMNS, ['id']);
    assert.ok('problem' in checked, `refused: ${JSON.stringify(value)}`);
    return checked.problem;
  };
  assert.match(problem(undefined), /it returned undefined/);
  assert.match(problem({ action: 'keep' }), /action is "keep"/);
  assert.match(problem({ action: 'merge' }), /merge whose row is undefined/);
  assert.match(problem({ action: 'merge', row: { w: 'x' } }), /column\(s\) w that the table does not have/);
  assert.match(problem({ action: 'merge', row: { v: 3 } }), /must be strings .* v is not/);
  assert.match(problem({ action: 'merge', row: { id: '2' } }), /changes key column\(s\) id/);
  assert.match(problem({ action: 'merge', row: { v: 'x' } }, conflict('delete_missing', null)), /merge is not a decision for delete_missing/);
  // update_missing: apply_remote needs every column (an unchanged TOAST value is absent).
  assert.match(problem('apply_remote', conflict('update_missing', { id: '1' })), /does not carry v/);
  assert.deepEqual(checkDecision('apply_remote', conflict('update_missing', { id: '1', v: null }), COLUMNS, ['id']), { ok: { action: 'apply_remote' } });
});

const table = (replicaIdentity: 'default' | 'full' = 'default'): TargetTable => idValueTable({ replicaIdentity, idFlaggedKey: replicaIdentity === 'default' });

test('custom tables: probes keep the local row and return the conflicting ordinals; other policies and detect: false are untouched', () => {
  const resolver: NamedResolver = { module: '/r.mjs', resolve: () => 'skip' };
  const apply = new ConflictApply({ policy: 'custom', tables: new Map(), resolver }, 'sub', 'origin');
  const t = table();
  const custom = apply.custom(t);
  assert.equal(custom?.resolver, resolver);
  assert.equal(apply.foldable(t), false, 'each conflict needs its own source transaction');
  const insert = probeStatement({ kind: 'insert', table: t, rows: [row('1', 'x')], sources: [tx] }, 'origin');
  assert.match(insert?.text ?? '', /ON CONFLICT DO NOTHING RETURNING "id"/);
  assert.match(insert?.text ?? '', /pg_xact_commit_timestamp_origin\(t\.xmin\)/);
  assert.doesNotMatch(insert?.text ?? '', /conflict_log/, 'the probe logs nothing: the follow-up does, after the resolver decided');
  const update = probeStatement({ kind: 'update', table: t, setColumns: [1], rows: [{ key: ['1'], newTuple: row('1', 'x') }], sources: [tx] }, 'none');
  assert.match(update?.text ?? '', /UPDATE "public"\."t" AS t SET .* RETURNING v\.ord/s);
  assert.equal(probeStatement({ kind: 'delete', table: t, keys: [['1']], sources: [] }, 'none'), undefined, 'a folded run (no per-row sources) is not probed');
  // A custom table whose run cannot be probed falls back to error's statements, never to skip's logging.
  assert.ok(!apply.update(t, [1], [{ key: ['1'], newTuple: row('1', 'x') }], [tx])?.logs);

  const off = new ConflictApply({ policy: 'error', tables: new Map(), detect: false }, 'sub', 'none');
  assert.equal(off.update(t, [1], [{ key: ['1'], newTuple: row('1', 'x') }], [tx]), undefined, 'detect: false: the plain UPDATE');
  assert.equal(off.delete(t, [['1']], [tx]), undefined);
  assert.equal(off.foldStatements(t), PLAIN_FOLD_STATEMENTS);
  assert.equal(off.custom(t), undefined);
});

test('optimistic probes count each conflicting row in pgtide.unresolved; awaited ones do not', () => {
  const t = table();
  const run = { kind: 'insert' as const, table: t, rows: [row('1', 'x')], sources: [tx] };
  assert.match(probeStatement(run, 'none', true)?.text ?? '', /set_config\('pgtide\.unresolved', \(coalesce\(nullif\(current_setting\('pgtide\.unresolved', true\), ''\), '0'\)::int \+ 1\)::text, true\) AS unresolved\s+FROM s/);
  assert.doesNotMatch(probeStatement(run, 'none', false)?.text ?? '', /unresolved/);
  const update = { kind: 'update' as const, table: t, setColumns: [1], rows: [{ key: ['1'], newTuple: row('1', 'x') }], sources: [tx] };
  assert.match(probeStatement(update, 'none', true)?.text ?? '', /SELECT v\.ord::int AS ord, set_config\('pgtide\.unresolved'/);
  assert.match(probeStatement({ kind: 'delete', table: t, keys: [['1']], sources: [tx] }, 'none', true)?.text ?? '', /SELECT v\.ord::int AS ord, set_config\('pgtide\.unresolved'/);
  assert.equal(runCommitLsn(run), tx.commitLsn);
});

test('after a replay a resolver table is awaited up to the failed batch\'s last commit; after a second, for good (said once)', () => {
  const modes = new ResolverModes();
  const { lines, logger } = capturingLogger();
  const mark = { folded: false, maxCommitLsn: lsn(100n) };
  const a = '"public"."a"';
  assert.equal(modes.awaited(a, lsn(1n)), false, 'optimistic until a replay');
  const first = new ResolverReplayError(a, mark);
  mark.maxCommitLsn = lsn(200n); // the batch grew after the probe: the replay covers all of it
  assert.equal(first.untilLsn, lsn(200n));
  assert.equal(first.retryable, true);
  modes.replayed(first, logger);
  assert.equal(modes.awaited(a, lsn(200n)), true);
  assert.equal(modes.awaited(a, lsn(201n)), false, 'optimistic again after the replayed stretch');
  assert.equal(modes.awaited('"public"."b"', lsn(1n)), false, 'other tables untouched');
  modes.replayed(new ResolverReplayError(a, { folded: false, maxCommitLsn: lsn(300n) }), logger);
  modes.replayed(new ResolverReplayError(a, { folded: false, maxCommitLsn: lsn(400n) }), logger);
  assert.equal(modes.awaited(a, lsn(10_000n)), true);
  const forGood = lines.filter((l) => l.includes('is applied awaited until pgtide restarts'));
  assert.equal(forGood.length, 1, lines.join(''));
  assert.equal(lines.filter((l) => l.includes('the optimistic probe of')).length, 3, 'each replay is logged');
});

test('commit times reach the resolver as UTC ISO text with microseconds', () => {
  assert.equal(isoMicros(0n), '2000-01-01T00:00:00.000000Z');
  assert.equal(isoMicros(818_850_896_123_456n), '2025-12-12T10:34:56.123456Z');
});
