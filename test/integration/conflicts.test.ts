/**
 * Conflicts on the target (docs/conflicts.md): insert_exists, update_missing
 * and delete_missing under the error, skip and apply_remote policies, with
 * the conflict log checked row by row; error stops apply without a retry
 * loop and shows in `pgtide status`; kill -9 while batches with resolved
 * conflicts commit logs each conflict exactly once.
 *
 * One cluster pair, one database per case. The target tracks commit
 * timestamps, so the log's local commit time (and, on 16+, origin) is filled.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { collectStatus, formatStatus } from '../../src/control/status.js';
import type { ConflictEvent } from '../../src/apply/conflict-policy.js';
import {
  TestScope, startPair, databasePair, ddlBoth, startEngine, configInput, withTimeout, waitFor, waitForCatchUp,
  assertTablesEqual, texts, writeConfigFile, cliConfig, runCli, type Pair,
} from '../support/replication.js';
import { finishLoggedOnce, killWhileLogging, slotOnly } from '../support/conflict-kills.js';
import { conflictLog, stoppedWith, streamingPair, type LogRow } from '../support/conflict-setup.js';



const TABLES = `CREATE TABLE ins (id int PRIMARY KEY, v text);
  CREATE TABLE upd (id int PRIMARY KEY, v text, n int);
  CREATE TABLE del (id int PRIMARY KEY, v text);
  CREATE TABLE fu (a int, b text); ALTER TABLE fu REPLICA IDENTITY FULL;
  CREATE TABLE uq (id int PRIMARY KEY, code text UNIQUE);`;

const SETUP = {
  ddl: TABLES,
  rows: `INSERT INTO upd SELECT g, 'v' || g, g FROM generate_series(1, 5) g; INSERT INTO del SELECT g, 'v' || g FROM generate_series(1, 5) g;
    INSERT INTO fu VALUES (1, 'x'), (2, 'y'), (3, 'z');`,
  tables: ['ins', 'upd', 'del', 'fu', 'uq'],
};

/**
 * On the target: a local row for key 5 of ins, rows 2 of upd and del gone, rows 2 and 3 of the
 * REPLICA IDENTITY FULL table fu gone. Then the source's changes, with clean ones around them.
 */
async function diverge(p: Pair): Promise<void> {
  await p.dst.unsafe(`INSERT INTO ins VALUES (5, 'local'); DELETE FROM upd WHERE id = 2; DELETE FROM del WHERE id = 2; DELETE FROM fu WHERE a IN (2, 3);`);
  await p.src.unsafe(`INSERT INTO ins VALUES (4, 'remote'), (5, 'remote'), (6, 'remote')`);
  await p.src.unsafe(`UPDATE upd SET v = 'new', n = n + 100 WHERE id IN (1, 2, 3)`);
  await p.src.unsafe(`DELETE FROM del WHERE id IN (1, 2)`);
  await p.src.unsafe(`UPDATE fu SET b = 'y2' WHERE a = 2; DELETE FROM fu WHERE a = 3; UPDATE fu SET b = 'x2' WHERE a = 1`);
}

describe('conflicts: detection, policies and the conflict log', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;

  before(async () => {
    // A small decoding memory on the source: the large transaction of one case is streamed.
    pair = await startPair(scope, { name: 'conflicts', targetSettings: { track_commit_timestamp: 'on' }, sourceSettings: { logical_decoding_work_mem: '64kB' } });
  });
  after(() => scope.cleanup());

  it('error (the default): each kind stops apply once, not retried, with the table, key and source transaction; status shows it', async () => {
    const { p, running, config } = await streamingPair(scope, pair, 'c_error', SETUP, undefined);
    await p.dst.unsafe(`INSERT INTO ins VALUES (5, 'local')`);
    await p.src.unsafe(`INSERT INTO ins VALUES (4, 'remote'), (5, 'remote')`);
    const insert = await stoppedWith(running);
    assert.equal(insert.code, 'APPLY_CONFLICT');
    assert.equal(insert.retryable, false, 'a conflict under the error policy is not retried');
    assert.equal(insert.sqlState, '23505');
    assert.match(insert.message, /insert_exists/);
    assert.match(insert.message, /"public"\."ins"/);
    assert.match(insert.message, /Key \(id\)=\(5\) already exists/);
    assert.match(insert.message, /xid \d+, commit LSN [0-9A-F]+\/[0-9A-F]+/);
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM ins ORDER BY id`), ['5:local'], 'the batch rolled back: row 4 is not applied either');
    const status = await collectStatus(config);
    assert.equal(status.lastError?.code, 'APPLY_CONFLICT');
    assert.equal(status.lastError?.retrying, false);
    assert.match(formatStatus(status), /last error\s+APPLY_CONFLICT \(SQLSTATE 23505\).*not retried/);

    // Fixed on the target: the next start applies it; then update_missing stops the same way.
    await p.dst.unsafe(`DELETE FROM ins WHERE id = 5; DELETE FROM upd WHERE id = 2`);
    await p.src.unsafe(`UPDATE upd SET v = 'new' WHERE id IN (1, 2, 3)`);
    const second = startEngine(scope, config);
    const update = await stoppedWith(second);
    assert.equal(update.code, 'APPLY_CONFLICT');
    assert.equal(update.retryable, false);
    assert.match(update.message, /conflict update_missing on "public"\."upd"/);
    assert.match(update.message, /key \{"id": "2"\}/);
    assert.match(update.message, /xid \d+, commit LSN [0-9A-F]+\/[0-9A-F]+/);
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM upd WHERE id IN (1, 3) ORDER BY id`), ['1:v1', '3:v3'], 'the UPDATE batch rolled back');
    const afterUpdate = await collectStatus(config);
    assert.equal(afterUpdate.lastError?.code, 'APPLY_CONFLICT');
    assert.equal(afterUpdate.lastError?.retrying, false);

    await p.dst.unsafe(`INSERT INTO upd VALUES (2, 'v2', 2); DELETE FROM del WHERE id = 2`);
    await p.src.unsafe(`DELETE FROM del WHERE id IN (1, 2)`);
    const third = startEngine(scope, config);
    const del = await stoppedWith(third);
    assert.equal(del.code, 'APPLY_CONFLICT');
    assert.match(del.message, /conflict delete_missing on "public"\."del"/);
    assert.match(del.message, /key \{"id": "2"\}/);
    assert.equal((await conflictLog(p, 'c_error')).length, 0, 'nothing is logged under error: the batch rolled back');

    // REPLICA IDENTITY FULL: the old row is the key.
    await p.dst.unsafe(`INSERT INTO del VALUES (2, 'v2'); DELETE FROM fu WHERE a = 2`);
    await p.src.unsafe(`UPDATE fu SET b = 'y2' WHERE a = 2`);
    const full = await stoppedWith(startEngine(scope, config));
    assert.equal(full.code, 'APPLY_CONFLICT');
    assert.match(full.message, /conflict update_missing on "public"\."fu"/);
    assert.match(full.message, /key \{"a": "2", "b": "y"\}/);

    await p.dst.unsafe(`INSERT INTO fu VALUES (2, 'y')`);
    const fourth = startEngine(scope, config);
    await withTimeout(fourth.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: fourth });
    for (const t of ['ins', 'upd', 'del']) await assertTablesEqual(p, t, { orderBy: 'id' });
    await assertTablesEqual(p, 'fu', { orderBy: 'a' });
    assert.equal((await collectStatus(config)).lastError, undefined, 'cleared once apply moved on');
    await fourth.stop();
  });

  it('skip: keeps the local rows, applies the rest, logs each conflict with its source transaction and the local row', async () => {
    // The engine hook that feeds the Prometheus counters: one event per logged conflict, once committed.
    const events: ConflictEvent[] = [];
    const { p, running } = await streamingPair(scope, pair, 'c_skip', SETUP, { policy: 'skip' }, { onConflicts: (batch) => events.push(...batch) });
    // A conflict on another unique index than the key's is skipped too.
    await p.dst.unsafe(`INSERT INTO uq VALUES (10, 'dup')`);
    await p.src.unsafe(`INSERT INTO uq VALUES (11, 'dup'), (12, 'free')`);
    await diverge(p);
    await waitForCatchUp(p, { engine: running });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM ins ORDER BY id`), ['4:remote', '5:local', '6:remote']);
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v || ':' || n AS r FROM upd ORDER BY id`), ['1:new:101', '3:new:103', '4:v4:4', '5:v5:5'], 'row 2 stays missing');
    assert.deepEqual(await texts(p.dst, `SELECT id::text AS r FROM del ORDER BY id`), ['3', '4', '5']);
    assert.deepEqual(await texts(p.dst, `SELECT a || ':' || b AS r FROM fu ORDER BY a`), ['1:x2']);
    const log = await conflictLog(p, 'c_skip');
    assert.deepEqual(log.map((r) => `${r.table_name} ${r.kind} ${r.resolution} ${JSON.stringify(r.key)}`), [
      '"public"."del" delete_missing skip {"id":"2"}',
      '"public"."fu" delete_missing skip {"a":"3","b":"z"}',
      '"public"."fu" update_missing skip {"a":"2","b":"y"}',
      '"public"."ins" insert_exists skip {"id":"5"}',
      '"public"."upd" update_missing skip {"id":"2"}',
      '"public"."uq" insert_exists skip {"id":"11"}',
    ]);
    const [del, , fullUpdate, ins, upd, uq] = log as [LogRow, LogRow, LogRow, LogRow, LogRow, LogRow];
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || code AS r FROM uq ORDER BY id`), ['10:dup', '12:free']);
    assert.equal(uq.local_row, null, 'the key was free: the conflict was on another unique index');
    assert.deepEqual(uq.remote_new, { id: '11', code: 'dup' });
    assert.deepEqual(fullUpdate.remote_new, { a: '2', b: 'y2' });
    assert.deepEqual(ins.remote_new, { id: '5', v: 'remote' });
    assert.deepEqual(ins.local_row, { id: 5, v: 'local' });
    assert.ok(ins.local_commit_time instanceof Date, 'the local row\'s commit time is logged (track_commit_timestamp is on)');
    assert.deepEqual(upd.remote_new, { id: '2', v: 'new', n: '102' });
    assert.equal(upd.local_row, null);
    assert.deepEqual(del.remote_old, { id: '2' });
    for (const row of log) {
      assert.match(row.source_xid ?? '', /^\d+$/);
      assert.match(row.source_commit_lsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
      assert.ok(row.source_commit_time instanceof Date && Math.abs(row.source_commit_time.getTime() - Date.now()) < 600_000, 'the source commit time is logged');
    }
    assert.notEqual(ins.source_xid, upd.source_xid, 'each row carries its own source transaction');
    await waitFor('the committed conflicts reported to the engine hook', () => (events.length >= 6 ? true : undefined), { timeoutMs: 10_000 });
    assert.deepEqual(events.map((e) => `${e.table} ${e.kind} ${e.resolution}`).sort(), log.map((r) => `${r.table_name} ${r.kind} ${r.resolution}`).sort());
    await running.stop();
  });

  it('apply_remote, with a per-table skip override: the remote rows win and the log says so; `pgtide conflicts` summarises', async () => {
    const { p, running } = await streamingPair(scope, pair, 'c_remote', SETUP, { policy: 'apply_remote', tables: { 'public.del': 'skip' } });
    // fu follows the pipeline policy: its missing row 2 is inserted from the complete new row.
    await diverge(p);
    await waitForCatchUp(p, { engine: running });
    await assertTablesEqual(p, 'ins', { orderBy: 'id' });
    await assertTablesEqual(p, 'upd', { orderBy: 'id' });
    await assertTablesEqual(p, 'del', { orderBy: 'id' });
    await assertTablesEqual(p, 'fu', { orderBy: 'a' });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM ins WHERE id = 5`), ['5:remote'], 'insert_exists became an update');
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v || ':' || n AS r FROM upd WHERE id = 2`), ['2:new:102'], 'update_missing inserted the complete new row');
    const log = await conflictLog(p, 'c_remote');
    assert.deepEqual(log.map((r) => `${r.table_name} ${r.kind} ${r.resolution} ${JSON.stringify(r.key)}`), [
      '"public"."del" delete_missing skip {"id":"2"}',
      '"public"."fu" delete_missing apply_remote {"a":"3","b":"z"}',
      '"public"."fu" update_missing apply_remote {"a":"2","b":"y"}',
      '"public"."ins" insert_exists apply_remote {"id":"5"}',
      '"public"."upd" update_missing apply_remote {"id":"2"}',
    ]);
    assert.deepEqual(log[3]!.local_row, { id: 5, v: 'local' }, 'the overwritten local row is in the log');
    await running.stop();

    const file = writeConfigFile(scope, cliConfig(p, { name: 'c_remote', tables: ['ins', 'upd', 'del', 'fu', 'uq'] }));
    const result = await runCli(scope, ['conflicts', '--config', file]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /5 conflict\(s\) logged/);
    assert.match(result.stdout, /1\s+insert_exists\s+apply_remote\s+"public"\."ins"/);
    assert.match(result.stdout, /1\s+delete_missing\s+skip\s+"public"\."del"/);
    // jsonb orders keys by length first.
    assert.match(result.stdout, /remote new: \{"v":"remote","id":"5"\}/);
  });

  it('a large transaction applied while it streams logs its conflicts with its xid (its commit is not known yet)', async () => {
    const p = await databasePair(scope, pair, 'c_stream');
    await ddlBoth(p, `CREATE TABLE s (id int PRIMARY KEY, v text)`);
    const config = parseConfig(configInput(p, { name: 'c_stream', tables: ['s'], conflicts: { policy: 'skip' } }));
    const running = startEngine(scope, config);
    await withTimeout(running.streaming, 90_000, 'streaming');
    await waitForCatchUp(p, { engine: running });
    await p.dst.unsafe(`INSERT INTO s VALUES (7, 'local')`);
    const [tx] = await p.src.begin(async (sql) => {
      await sql.unsafe(`INSERT INTO s SELECT g, repeat('r', 100) FROM generate_series(1, 5000) g`);
      return sql.unsafe<{ xid: string }[]>(`SELECT (txid_current() % 4294967296)::text AS xid`);
    });
    await waitForCatchUp(p, { engine: running });
    // Slot statistics reach the view with a delay.
    await waitFor('the source to report a streamed transaction', async () => {
      const [slot] = await p.src.unsafe<{ n: string }[]>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = 'c_stream_slot'`);
      return Number(slot?.n) > 0 ? true : undefined;
    }, { timeoutMs: 15_000 });
    assert.deepEqual(await texts(p.dst, `SELECT v AS r FROM s WHERE id = 7`), ['local']);
    assert.equal(Number((await texts(p.dst, `SELECT count(*)::text AS r FROM s`))[0]), 5000);
    const log = await conflictLog(p, 'c_stream');
    assert.equal(log.length, 1);
    assert.equal(log[0]!.kind, 'insert_exists');
    assert.equal(log[0]!.source_xid, tx!.xid);
    assert.equal(log[0]!.source_commit_lsn, null, 'a streamed transaction\'s commit LSN is not known while it applies');
    await running.stop();
  });

  it('kill -9 while batches with resolved conflicts commit: each conflict is logged exactly once', async () => {
    const p = await databasePair(scope, pair, 'c_kill');
    await ddlBoth(p, `CREATE TABLE k (id int PRIMARY KEY, v text)`);
    const file = writeConfigFile(scope, cliConfig(p, { name: 'c_kill', tables: ['k'], conflicts: { policy: 'skip' }, apply: { batchMaxTransactions: 1, batchMaxAgeMs: 0 } }));
    await slotOnly(scope, file);

    // 400 target-only rows, then 400 source transactions inserting the same keys (and one clean row each).
    const N = 400;
    await p.dst.unsafe(`INSERT INTO k SELECT g, 'local' FROM generate_series(1, ${N}) g`);
    for (let i = 1; i <= N; i++) await p.src.unsafe(`INSERT INTO k VALUES (${i}, 'remote'), (${N + i}, 'remote')`);
    const run = { dst: p.dst, file, subscription: 'c_kill', total: N };
    await killWhileLogging(scope, run);
    await finishLoggedOnce(scope, run, (cli) => waitForCatchUp(p, { cli, timeoutMs: 120_000 }));
    assert.deepEqual(await texts(p.dst, `SELECT v || ':' || count(*) AS r FROM k GROUP BY v ORDER BY v`), [`local:${N}`, `remote:${N}`]);
  });
});
