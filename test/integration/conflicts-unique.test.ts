/**
 * Unique conflicts on indexes other than the key's (docs/conflicts.md):
 * update_exists and multiple_unique_conflicts under error, skip and
 * apply_remote, with the conflict log checked row by row; kill -9 while
 * batches that resolved them commit logs each exactly once. And
 * update_deleted, with tombstones: two edges (A and C) apply into one target,
 * A's delete and C's update of the same row meet there.
 *
 * One cluster pair, one database per case. The table has a key and two
 * more unique indexes; the first unique violation puts it in check mode
 * (a replay), so each case also proves that the replay resolves the batch.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type postgres from 'postgres';
import { defaultMajor } from '../../src/harness/cluster.js';
import { parseConfig, type ConfigInput } from '../../src/control/config.js';
import {
  TestScope, startPair, databasePair, ddlBoth, startEngine, configInput, withTimeout, waitFor, waitForCatchUp,
  assertTablesEqual, texts, writeConfigFile, cliConfig, startCli, runCli, pinnedSql, type Pair, type RunningEngine,
} from '../support/replication.js';
import { cliExited, finishLoggedOnce, killWhileLogging, slotOnly } from '../support/conflict-kills.js';
import { conflictLog, stoppedWith, streamingPair, type LogRow } from '../support/conflict-setup.js';



const summary = (log: readonly LogRow[]): string[] =>
  log.map((r) => `${r.kind} ${r.resolution} ${JSON.stringify(r.key)} ${r.index_name ?? '-'} ${r.local_row ? String(r.local_row['id']) : '-'}`);

const TABLE = `CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE, code text UNIQUE, v text)`;

const SETUP = { ddl: TABLE, rows: `INSERT INTO u SELECT g, 'e' || g, 'c' || g, 'v' || g FROM generate_series(1, 4) g`, tables: ['u'] };

/** The log by key, each key's rows by kind and index. */
const BY_KEY = 'key::text, kind, index_name NULLS FIRST';

/**
 * Target-only rows that block the source's changes: 100 holds email x@1, 200 email y@, 201 code cz.
 * Source: one UPDATE run of rows 1 and 3 (1 meets 100 on email: update_exists; 3 is clean), row 2
 * meets 200 on email and 201 on code (multiple_unique_conflicts), and a clean update of row 4.
 */
async function diverge(p: Pair): Promise<void> {
  await p.dst.unsafe(`INSERT INTO u VALUES (100, 'x@1', 'c100', 'local'), (200, 'y@', 'c200', 'local'), (201, 'e201', 'cz', 'local')`);
  await p.src.unsafe(`UPDATE u SET email = 'x@' || id WHERE id IN (1, 3)`);
  await p.src.unsafe(`UPDATE u SET email = 'y@', code = 'cz' WHERE id = 2`);
  await p.src.unsafe(`UPDATE u SET v = 'clean' WHERE id = 4`);
}

interface Mesh {
  readonly p: Pair;
  /** Node C: a second source database whose edge applies into the same target database. */
  readonly c: postgres.Sql;
  readonly a: RunningEngine;
  readonly startC: () => RunningEngine;
}

/** Edge A (the pair's databases, with the initial copy) and edge C (no copy: C starts with A's rows) into one target. */
async function mesh(scope: TestScope, pair: Pair, database: string, conflicts: ConfigInput['conflicts']): Promise<Mesh> {
  const p = await databasePair(scope, pair, database);
  await pair.source.createDatabase(`${database}_c`);
  const c = pinnedSql(scope, pair.source, `${database}_c`);
  const ddl = `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE cmark (id bigserial PRIMARY KEY)`;
  await ddlBoth(p, ddl);
  await c.unsafe(ddl);
  const rows = `INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3) g`;
  await p.src.unsafe(rows);
  await c.unsafe(rows);
  const a = startEngine(scope, parseConfig(configInput(p, { name: `${database}_a`, tables: ['t'], ...(conflicts ? { conflicts } : {}) })));
  await withTimeout(a.streaming, 90_000, 'edge A streaming');
  await waitForCatchUp(p, { engine: a });
  const configC = parseConfig({
    name: `${database}_c`, source: { url: pair.source.urlFor(`${database}_c`) }, target: { url: p.targetUrl }, tables: ['t', 'cmark'],
    copy: { enabled: false }, apply: { batchMaxAgeMs: 10 }, statusIntervalMs: 1000, sequences: { enabled: false }, ...(conflicts ? { conflicts } : {}),
  });
  return { p, c, a, startC: () => startEngine(scope, configC) };
}

/** Everything committed on C so far is on the target (C's own marker table). */
async function catchUpC(m: Mesh, engine: RunningEngine): Promise<void> {
  const [row] = await m.c.unsafe<{ id: string }[]>(`INSERT INTO cmark DEFAULT VALUES RETURNING id::text AS id`);
  await waitFor(`C's marker ${row!.id} on the target`, async () => ((await m.p.dst.unsafe(`SELECT 1 FROM cmark WHERE id = $1::bigint`, [row!.id])).length ? true : undefined),
    { timeoutMs: 60_000, failFast: () => (engine.finished ? `edge C stopped: ${String(engine.error)}` : undefined) });
}

/**
 * C's update of row 1 commits before A's delete of rows 1 and 2 (edge C is stopped meanwhile, so
 * it arrives late); C's update of row 2 commits after that delete; row 3 is deleted on the target
 * by hand (no tombstone) and updated on C. Then edge C starts and applies the three updates.
 */
async function concurrentDeleteAndUpdate(m: Mesh): Promise<RunningEngine> {
  const first = m.startC();
  await withTimeout(first.streaming, 90_000, 'edge C streaming');
  await catchUpC(m, first);
  await first.stop();
  await m.c.unsafe(`UPDATE t SET v = 'c-early' WHERE id = 1`);
  await m.p.src.unsafe(`DELETE FROM t WHERE id IN (1, 2)`);
  await waitForCatchUp(m.p, { engine: m.a });
  assert.deepEqual(await texts(m.p.dst, `SELECT key::text || ':' || (delete_commit_time IS NOT NULL) AS r FROM pgtide.tombstone ORDER BY key::text`),
    ['{"id": "1"}:true', '{"id": "2"}:true'], 'the applied deletes left tombstones with their commit time');
  await m.c.unsafe(`UPDATE t SET v = 'c-late' WHERE id = 2`);
  await m.p.dst.unsafe(`DELETE FROM t WHERE id = 3`);
  await m.c.unsafe(`UPDATE t SET v = 'c-miss' WHERE id = 3`);
  return m.startC();
}

describe('conflicts on other unique indexes: update_exists, multiple_unique_conflicts', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;

  before(async () => {
    // Thirteen subscriptions: on 18 each origin with progress takes one of max_active_replication_origins (default 10).
    const major = defaultMajor();
    pair = await startPair(scope, { name: 'conflicts_unique', major, targetSettings: { track_commit_timestamp: 'on', ...(major >= 18 ? { max_active_replication_origins: 40 } : {}) } });
  });
  after(() => scope.cleanup());

  it('error: stops naming the kind, the index, the key and the local key; nothing applied or logged', async () => {
    const { p, running, config } = await streamingPair(scope, pair, 'u_error', SETUP, undefined);
    await p.dst.unsafe(`INSERT INTO u VALUES (100, 'x@1', 'c100', 'local')`);
    await p.src.unsafe(`UPDATE u SET email = 'x@' || id WHERE id IN (1, 3)`);
    const stop = await stoppedWith(running);
    assert.equal(stop.code, 'APPLY_CONFLICT');
    assert.equal(stop.retryable, false);
    assert.equal(stop.sqlState, '23505');
    assert.match(stop.message, /conflict update_exists on "public"\."u"/);
    assert.match(stop.message, /duplicate key value violates unique constraint "u_email_key" \(SQLSTATE 23505\)\. DETAIL: Key \(email\)=\(x@1\) already exists\./);
    assert.match(stop.message, /u_email_key holds local row \{"id":"100"\}/);
    assert.match(stop.message, /remote key \{"id":"1"\}/);
    assert.match(stop.message, /xid \d+, commit LSN [0-9A-F]+\/[0-9A-F]+/);
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || email AS r FROM u WHERE id IN (1, 3) ORDER BY id`), ['1:e1', '3:e3'], 'the batch rolled back');

    // Fixed on the target; then a row meeting local rows on two indexes stops as multiple_unique_conflicts.
    await p.dst.unsafe(`DELETE FROM u WHERE id = 100; INSERT INTO u VALUES (200, 'y@', 'c200', 'local'), (201, 'e201', 'cz', 'local')`);
    await p.src.unsafe(`UPDATE u SET email = 'y@', code = 'cz' WHERE id = 2`);
    const multiple = await stoppedWith(startEngine(scope, config));
    assert.equal(multiple.code, 'APPLY_CONFLICT');
    assert.match(multiple.message, /conflict multiple_unique_conflicts on "public"\."u"/);
    assert.match(multiple.message, /DETAIL: Key \(code\)=\(cz\) already exists\. Key \(email\)=\(y@\) already exists\./);
    assert.match(multiple.message, /u_code_key holds local row \{"id":"201"\}, u_email_key holds local row \{"id":"200"\}/);
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || email || ':' || code AS r FROM u WHERE id = 2`), ['2:e2:c2'], 'the change rolled back');
    assert.equal((await conflictLog(p, 'u_error', BY_KEY)).length, 0, 'nothing is logged under error');

    await p.dst.unsafe(`DELETE FROM u WHERE id IN (200, 201)`);
    const fixed = startEngine(scope, config);
    await withTimeout(fixed.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: fixed });
    await assertTablesEqual(p, 'u', { orderBy: 'id' });
    await fixed.stop();
  });

  it('skip: keeps the local rows, drops the blocked changes, applies the rest of the run, logs each local row met', async () => {
    const { p, running } = await streamingPair(scope, pair, 'u_skip', SETUP, { policy: 'skip' });
    await diverge(p);
    await waitForCatchUp(p, { engine: running });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || email || ':' || code || ':' || v AS r FROM u ORDER BY id`), [
      '1:e1:c1:v1', '2:e2:c2:v2', '3:x@3:c3:v3', '4:e4:c4:clean',
      '100:x@1:c100:local', '200:y@:c200:local', '201:e201:cz:local',
    ]);
    const log = await conflictLog(p, 'u_skip', BY_KEY);
    assert.deepEqual(summary(log), [
      'update_exists skip {"id":"1"} u_email_key 100',
      'multiple_unique_conflicts skip {"id":"2"} u_code_key 201',
      'multiple_unique_conflicts skip {"id":"2"} u_email_key 200',
    ]);
    const [one] = log as [LogRow];
    assert.deepEqual(one.remote_old, { id: '1' });
    assert.deepEqual(one.remote_new, { id: '1', email: 'x@1', code: 'c1', v: 'v1' });
    assert.deepEqual(one.local_row, { id: 100, email: 'x@1', code: 'c100', v: 'local' });
    assert.ok(one.local_commit_time instanceof Date, 'the local row\'s commit time is logged');
    for (const row of log) {
      assert.match(row.source_xid ?? '', /^\d+$/);
      assert.match(row.source_commit_lsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    }
    await running.stop();
  });

  it('apply_remote: removes the local rows that block the remote row (logging each), then applies it; INSERT too', async () => {
    const { p, running } = await streamingPair(scope, pair, 'u_remote', SETUP, { policy: 'apply_remote' });
    // An INSERT meeting its own key (row 5) and another row's email (300): both indexes.
    await p.dst.unsafe(`INSERT INTO u VALUES (5, 'own', 'own', 'local'), (300, 'q@', 'c300', 'local')`);
    await p.src.unsafe(`INSERT INTO u VALUES (5, 'q@', 'c5', 'remote'), (6, 'e6', 'c6', 'remote')`);
    await diverge(p);
    await waitForCatchUp(p, { engine: running });
    await assertTablesEqual(p, 'u', { orderBy: 'id' });
    assert.deepEqual(summary(await conflictLog(p, 'u_remote', BY_KEY)), [
      'update_exists apply_remote {"id":"1"} u_email_key 100',
      'multiple_unique_conflicts apply_remote {"id":"2"} u_code_key 201',
      'multiple_unique_conflicts apply_remote {"id":"2"} u_email_key 200',
      'insert_exists apply_remote {"id":"5"} - 5',
      'multiple_unique_conflicts apply_remote {"id":"5"} u_email_key 300',
    ]);
    await running.stop();

    const file = writeConfigFile(scope, cliConfig(p, { name: 'u_remote', tables: ['u'] }));
    const result = await runCli(scope, ['conflicts', '--config', file]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /5 conflict\(s\) logged/);
    assert.match(result.stdout, /3\s+multiple_unique_conflicts\s+apply_remote\s+"public"\."u"/);
    assert.match(result.stdout, /local:\s+\{[^\n]*"id":300[^\n]*\} on u_email_key/, 'the removed local row and the index it was met on');
  });

  it('update_deleted under error: the stop names it; nothing is logged', async () => {
    const m = await mesh(scope, pair, 'd_error', { policy: 'error', tombstones: true });
    const c = await concurrentDeleteAndUpdate(m);
    const stop = await stoppedWith(c);
    assert.equal(stop.code, 'APPLY_CONFLICT');
    assert.equal(stop.retryable, false);
    assert.match(stop.message, /conflict update_deleted on "public"\."t"/);
    assert.match(stop.message, /key \{"id": "1"\}/);
    assert.equal((await conflictLog(m.p, 'd_error_c', BY_KEY)).length, 0);
    await m.a.stop();
  });

  it('update_deleted under skip: every update of a deleted row is dropped and logged with the delete\'s time', async () => {
    const m = await mesh(scope, pair, 'd_skip', { policy: 'skip', tombstones: true });
    const c = await concurrentDeleteAndUpdate(m);
    await withTimeout(c.streaming, 90_000, 'edge C streaming');
    await catchUpC(m, c);
    assert.deepEqual(await texts(m.p.dst, `SELECT id || ':' || v AS r FROM t ORDER BY id`), []);
    const log = await conflictLog(m.p, 'd_skip_c', BY_KEY);
    assert.deepEqual(summary(log), [
      'update_deleted skip {"id":"1"} - -',
      'update_deleted skip {"id":"2"} - -',
      'update_missing skip {"id":"3"} - -',
    ]);
    const [one] = log as [LogRow];
    assert.deepEqual(one.remote_new, { id: '1', v: 'c-early' });
    assert.ok(one.local_commit_time instanceof Date, 'the delete\'s commit time is logged as the local one');
    await c.stop();
    await m.a.stop();
  });

  it('update_deleted under apply_remote: a newer delete wins (update dropped), an older one does not (row inserted back)', async () => {
    const m = await mesh(scope, pair, 'd_remote', { policy: 'apply_remote', tombstones: true });
    const c = await concurrentDeleteAndUpdate(m);
    await withTimeout(c.streaming, 90_000, 'edge C streaming');
    await catchUpC(m, c);
    assert.deepEqual(await texts(m.p.dst, `SELECT id || ':' || v AS r FROM t ORDER BY id`), ['2:c-late', '3:c-miss']);
    assert.deepEqual(summary(await conflictLog(m.p, 'd_remote_c', BY_KEY)), [
      'update_deleted skip {"id":"1"} - -',
      'update_deleted apply_remote {"id":"2"} - -',
      'update_missing apply_remote {"id":"3"} - -',
    ]);
    await c.stop();
    await m.a.stop();
  });

  it('tombstones are pruned by age while apply goes on', async () => {
    const p = await databasePair(scope, pair, 'd_prune');
    await ddlBoth(p, `CREATE TABLE t (id int PRIMARY KEY, v text)`);
    await p.src.unsafe(`INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3) g`);
    const running = startEngine(scope, parseConfig(configInput(p, { name: 'd_prune', tables: ['t'], conflicts: { policy: 'skip', tombstones: true, tombstoneRetention: '1s' } })));
    await withTimeout(running.streaming, 90_000, 'streaming');
    await p.src.unsafe(`DELETE FROM t WHERE id = 1`);
    await waitForCatchUp(p, { engine: running });
    assert.deepEqual(await texts(p.dst, `SELECT key::text AS r FROM pgtide.tombstone`), ['{"id": "1"}']);
    let i = 10;
    await waitFor('the tombstone pruned', async () => {
      await p.src.unsafe(`INSERT INTO t VALUES (${i++}, 'tick')`);
      return (await p.dst.unsafe(`SELECT 1 FROM pgtide.tombstone`)).length === 0 ? true : undefined;
    }, { timeoutMs: 30_000, intervalMs: 300 });
    await waitForCatchUp(p, { engine: running });
    await assertTablesEqual(p, 't', { orderBy: 'id' });
    await running.stop();
  });

  it('kill -9 while batches that resolved update_deleted commit: each conflict is logged exactly once', async () => {
    const m = await mesh(scope, pair, 'd_kill', { policy: 'skip', tombstones: true });
    const N = 150;
    const more = `INSERT INTO t SELECT g, 'v' || g FROM generate_series(4, ${N}) g`;
    await m.c.unsafe(more);
    await m.p.src.unsafe(more);
    // Edge C from the CLI, one source transaction per batch; its first start creates its slot.
    const file = writeConfigFile(scope, {
      name: 'd_kill_c', source: { url: pair.source.urlFor('d_kill_c') }, target: { url: m.p.targetUrl }, tables: ['t', 'cmark'],
      copy: { enabled: false }, apply: { batchMaxTransactions: 1, batchMaxAgeMs: 0 }, statusIntervalMs: 1000, sequences: { enabled: false },
      conflicts: { policy: 'skip', tombstones: true },
    }, 'c.yaml');
    await slotOnly(scope, file);

    // A deletes every row (tombstones on the target); then C updates each, one transaction each.
    await m.p.src.unsafe(`DELETE FROM t`);
    await waitForCatchUp(m.p, { engine: m.a });
    for (let i = 1; i <= N; i++) await m.c.unsafe(`UPDATE t SET v = 'late' WHERE id = ${i}`);
    const run = { dst: m.p.dst, file, subscription: 'd_kill_c', total: N };
    await killWhileLogging(scope, run);
    await finishLoggedOnce(scope, run, async (last) => {
      const [marker] = await m.c.unsafe<{ id: string }[]>(`INSERT INTO cmark DEFAULT VALUES RETURNING id::text AS id`);
      await waitFor('C caught up', async () => ((await m.p.dst.unsafe(`SELECT 1 FROM cmark WHERE id = $1::bigint`, [marker!.id])).length ? true : undefined),
        { timeoutMs: 120_000, failFast: cliExited(last) });
    });
    assert.deepEqual(await texts(m.p.dst, `SELECT kind || ':' || resolution || ':' || count(*) AS r FROM pgtide.conflict_log WHERE subscription = 'd_kill_c' GROUP BY kind, resolution`), [`update_deleted:skip:${N}`]);
    assert.deepEqual(await texts(m.p.dst, `SELECT count(*)::text AS r FROM t`), ['0'], 'the rows stay deleted');
    await m.a.stop();
  });

  it('kill -9 while batches that resolved unique conflicts commit: each conflict is logged exactly once', async () => {
    const p = await databasePair(scope, pair, 'u_kill');
    await ddlBoth(p, `CREATE TABLE k (id int PRIMARY KEY, code text UNIQUE)`);
    const file = writeConfigFile(scope, cliConfig(p, { name: 'u_kill', tables: ['k'], conflicts: { policy: 'apply_remote' }, apply: { batchMaxTransactions: 1, batchMaxAgeMs: 0 } }));
    const N = 200;
    await p.src.unsafe(`INSERT INTO k SELECT g, 's' || g FROM generate_series(1, ${N}) g`);
    const cli = startCli(scope, ['start', '--config', file]);
    await waitForCatchUp(p, { cli, timeoutMs: 120_000 });
    cli.kill('SIGKILL');
    await cli.exited;

    // N target-only rows, each blocking one source UPDATE (one transaction each) on the code index.
    await p.dst.unsafe(`INSERT INTO k SELECT 1000 + g, 'x' || g FROM generate_series(1, ${N}) g`);
    for (let i = 1; i <= N; i++) await p.src.unsafe(`UPDATE k SET code = 'x${i}' WHERE id = ${i}`);
    const run = { dst: p.dst, file, subscription: 'u_kill', total: N };
    await killWhileLogging(scope, run);
    await finishLoggedOnce(scope, run, (cli) => waitForCatchUp(p, { cli, timeoutMs: 120_000 }));
    const kinds = await texts(p.dst, `SELECT kind || ':' || resolution || ':' || count(*) AS r FROM pgtide.conflict_log WHERE subscription = 'u_kill' GROUP BY kind, resolution`);
    assert.deepEqual(kinds, [`update_exists:apply_remote:${N}`]);
    await assertTablesEqual(p, 'k', { orderBy: 'id' });
  });
});
