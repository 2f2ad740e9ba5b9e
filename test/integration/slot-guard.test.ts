/**
 * Issue 10, the slot and state guardian and its neighbours: a slot reused by
 * another config (case 1), a target restored from a backup (case 2), source =
 * target (case 7), the default publication and keyless tables (case 8), one
 * leader per subscription and origins unique per target cluster (case 9), and
 * lag that reaches zero on an idle source (case 11).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  TestScope, startPair, databasePair, ddlBoth, startEngine, startStreaming, waitForCatchUp, assertTablesEqual, configInput,
  capturingLogger, withTimeout, waitFor, pinnedSql, runCli, writeConfigFile, cliConfig, MARKER_TABLE,
  type Pair, type RunningEngine,
} from '../support/replication.js';
import { parseConfig, type ConfigInput } from '../../src/control/config.js';
import { defaultMajor } from '../../src/harness/cluster.js';
import { collectStatus, formatStatus } from '../../src/control/status.js';

const TABLE_DDL = `CREATE TABLE t (id int PRIMARY KEY, v text)`;
const MARKER_DDL = `CREATE TABLE ${MARKER_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`;

function codeOf(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : undefined;
}

/** Runs an engine until it streams or stops; stops it when it streams. Returns its error, if any. */
async function runUntilSettled(engine: RunningEngine, ms = 90_000): Promise<{ readonly streamed: boolean; readonly error: unknown }> {
  const streamed = await withTimeout(Promise.race([engine.streaming.then(() => true, () => false), engine.done.then(() => false)]), ms, 'engine neither streamed nor stopped');
  if (streamed) await engine.stop().catch(() => {});
  await engine.done;
  return { streamed, error: engine.error };
}

describe('slot and state guardian (issue 10)', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let clusters: Pair;

  before(async () => {
    // Each test is its own subscription (a slot on the source, an origin on the target); on 18 an
    // origin with progress takes one of max_active_replication_origins (default 10).
    const major = defaultMajor();
    clusters = await startPair(scope, { name: 'slotguard', major, ...(major >= 18 ? { targetSettings: { max_active_replication_origins: 40 } } : {}) });
  });
  after(() => scope.cleanup());

  it('case 1: a config with the same name and another target database refuses the slot, and the first one loses nothing', async () => {
    const pair = await databasePair(scope, clusters, 'c1');
    await clusters.target.createDatabase('c1b');
    const dstB = pinnedSql(scope, clusters.target, 'c1b');
    await ddlBoth(pair, TABLE_DDL);
    await dstB.unsafe(`${TABLE_DDL}; ${MARKER_DDL}`);
    await pair.src.unsafe(`INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`);
    const configA = parseConfig(configInput(pair, { name: 'shop' }));
    const configB = parseConfig(configInput({ sourceUrl: pair.sourceUrl, targetUrl: clusters.target.urlFor('c1b') }, { name: 'shop' }));

    const a = await startStreaming(scope, pair, { name: 'shop' });
    await waitForCatchUp(pair, { engine: a });
    await a.stop();
    await pair.src.unsafe(`INSERT INTO t SELECT g, 'late' FROM generate_series(101, 110) g`);

    const b = await runUntilSettled(startEngine(scope, configB));

    const again = startEngine(scope, configA);
    await withTimeout(again.streaming, 120_000, 'config A did not stream again');
    await waitForCatchUp(pair, { engine: again });
    await assertTablesEqual(pair, 't');
    await again.stop();

    assert.equal(b.streamed, false, 'config B must not stream from a slot it did not create');
    assert.equal(codeOf(b.error), 'SLOT_NOT_OURS');
    const message = (b.error as Error).message;
    assert.match(message, /shop_slot/);
    assert.match(message, /"c1"/, 'the message names the other owner (target database c1)');
  });

  it('case 2: a target restored from a backup taken before the slot moved on is refused; pgtide resync re-copies', async () => {
    const pair = await databasePair(scope, clusters, 'c2');
    await ddlBoth(pair, TABLE_DDL);
    await pair.src.unsafe(`INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`);
    const first = await startStreaming(scope, pair, { name: 'restore' });
    await waitForCatchUp(pair, { engine: first });
    await first.stop();

    const admin = pinnedSql(scope, clusters.target, 'postgres');
    const terminate = () => admin.unsafe(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'c2' AND pid <> pg_backend_pid()`);
    await terminate();
    await admin.unsafe(`CREATE DATABASE c2_snap TEMPLATE c2`);

    const second = await startStreaming(scope, pair, { name: 'restore' });
    await pair.src.unsafe(`INSERT INTO t SELECT g, 'after snapshot' FROM generate_series(101, 150) g`);
    await waitForCatchUp(pair, { engine: second });
    await second.stop();

    await admin.unsafe(`DROP DATABASE c2 WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE c2 TEMPLATE c2_snap`);

    const restored = await runUntilSettled(startEngine(scope, parseConfig(configInput(pair, { name: 'restore' }))));
    if (restored.streamed) {
      // Without the guard: it streams, and the 50 rows confirmed before the restore never come.
      const restarted = await startStreaming(scope, pair, { name: 'restore' });
      await waitForCatchUp(pair, { engine: restarted });
      await restarted.stop();
      await assertTablesEqual(pair, 't');
    }
    assert.equal(restored.streamed, false, 'pgtide must refuse to stream into a target that is behind the slot');
    assert.equal(codeOf(restored.error), 'SLOT_AHEAD_OF_TARGET');
    assert.match((restored.error as Error).message, /pgtide resync/);

    const file = writeConfigFile(scope, cliConfig(pair, { name: 'restore' }));
    const resync = await runCli(scope, ['resync', '--config', file]);
    assert.equal(resync.code, 0, `pgtide resync failed: ${resync.stderr}`);
    const after = await startStreaming(scope, pair, { name: 'restore' });
    await waitForCatchUp(pair, { engine: after });
    const fp = await assertTablesEqual(pair, 't');
    assert.equal(fp.count, 150);
    await after.stop();
  });

  it('case 7: source = target is refused, and the source table stays usable', async () => {
    const pair = await databasePair(scope, clusters, 'c7');
    await pair.src.unsafe(`${TABLE_DDL}; INSERT INTO t SELECT g, 'v' FROM generate_series(1, 1000) g`);
    const same = { sourceUrl: pair.sourceUrl, targetUrl: pair.sourceUrl };
    const engine = startEngine(scope, parseConfig(configInput(same, { name: 'self' })));
    const outcome = await Promise.race([engine.done.then(() => 'stopped' as const), sleep(30_000).then(() => 'still running' as const)]);
    const [row] = await withTimeout(pair.src.unsafe<{ n: string }[]>(`SELECT count(*)::text AS n FROM t`), 5000, 'a query on the source table is blocked');
    assert.equal(row?.n, '1000', 'the source table keeps its rows');
    assert.equal(outcome, 'stopped');
    assert.equal(codeOf(engine.error), 'SOURCE_IS_TARGET');
  });

  it('case 8: the default publication lists tables and refuses a table without replica identity', async () => {
    const pair = await databasePair(scope, clusters, 'c8');
    await ddlBoth(pair, `CREATE TABLE k (a int); CREATE TABLE p (id int PRIMARY KEY)`);
    await pair.src.unsafe(`INSERT INTO k VALUES (1), (2); INSERT INTO p VALUES (1)`);
    const first = await runUntilSettled(startEngine(scope, parseConfig(configInput(pair, { name: 'deflt' }))));
    // The source application must still be able to UPDATE and DELETE its keyless table.
    await pair.src.unsafe(`UPDATE k SET a = a + 10; DELETE FROM k WHERE a = 12`);
    assert.equal(first.streamed, false);
    assert.equal(codeOf(first.error), 'NO_REPLICA_IDENTITY');
    assert.match((first.error as Error).message, /"public"\."k"/);
    assert.doesNotMatch((first.error as Error).message, /"public"\."p"/);

    await pair.src.unsafe(`ALTER TABLE k REPLICA IDENTITY FULL`);
    const second = await startStreaming(scope, pair, { name: 'deflt' });
    const [pub] = await pair.src.unsafe<{ all: boolean }[]>(`SELECT puballtables AS all FROM pg_publication WHERE pubname = 'deflt_pub'`);
    assert.equal(pub?.all, false, 'the publication lists tables instead of FOR ALL TABLES');
    await pair.src.unsafe(`UPDATE k SET a = a + 1; INSERT INTO p VALUES (2)`);
    await waitForCatchUp(pair, { engine: second });
    await assertTablesEqual(pair, 'k');
    await assertTablesEqual(pair, 'p');
    await second.stop();
  });

  it('case 9a: two processes with one config: one copies and streams, the other waits and says so, then takes over', async () => {
    const pair = await databasePair(scope, clusters, 'c9');
    await ddlBoth(pair, TABLE_DDL);
    await pair.src.unsafe(`INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g`);
    const config = parseConfig(configInput(pair, { name: 'twice' }));
    const logA = capturingLogger();
    const logB = capturingLogger();
    const a = startEngine(scope, config, {}, logA.logger);
    const b = startEngine(scope, config, {}, logB.logger);
    const leader = await withTimeout(Promise.any([a.streaming.then(() => a), b.streaming.then(() => b)]), 120_000, 'neither engine streamed');
    const follower = leader === a ? b : a;
    const followerLog = leader === a ? logB : logA;
    await sleep(2000);
    assert.equal(follower.finished, false, `the second process keeps waiting (error: ${String(follower.error)})`);
    const copies = [...logA.lines, ...logB.lines].filter((l) => l.includes('initial copy started')).length;
    assert.equal(copies, 1, 'exactly one initial copy ran');
    assert.ok(followerLog.lines.some((l) => /waiting/.test(l) && l.includes('twice')), `the waiting process says so:\n${followerLog.lines.join('')}`);

    await leader.stop();
    await withTimeout(follower.streaming, 60_000, 'the waiting process did not take over');
    await pair.src.unsafe(`INSERT INTO t VALUES (50001, 'after takeover')`);
    await waitForCatchUp(pair, { engine: follower });
    await assertTablesEqual(pair, 't');

    // A third process waits while the follower leads, and stops cleanly when asked to.
    const logC = capturingLogger();
    const c = startEngine(scope, config, {}, logC.logger);
    await waitFor('the third process to wait', () => (logC.lines.some((l) => /waiting/.test(l)) ? true : undefined), { timeoutMs: 30_000 });
    await withTimeout(c.stop(), 10_000, 'a waiting process did not stop on abort');
    await follower.stop();
  });

  it('case 9b: two subscriptions with one name into two databases of one target cluster both replicate', async () => {
    const x = await databasePair(scope, clusters, 'c9x');
    const y = await databasePair(scope, clusters, 'c9y');
    await ddlBoth(x, TABLE_DDL);
    await ddlBoth(y, TABLE_DDL);
    // The origin name of earlier versions, with progress: retired at the first start.
    await x.dst.unsafe(`SELECT pg_replication_origin_create('pgtide_twin'); SELECT pg_replication_origin_advance('pgtide_twin', '0/1')`);
    const ex = await startStreaming(scope, x, { name: 'twin', slot: 'twin_x_slot' });
    const ey = startEngine(scope, parseConfig(configInput(y, { name: 'twin', slot: 'twin_y_slot' })));
    await withTimeout(ey.streaming, 120_000, 'the second subscription did not stream');
    await x.src.unsafe(`INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g`);
    await y.src.unsafe(`INSERT INTO t SELECT g, 'y' FROM generate_series(1, 200) g`);
    await waitForCatchUp(x, { engine: ex, timeoutMs: 30_000 });
    await waitForCatchUp(y, { engine: ey, timeoutMs: 30_000 });
    assert.equal((await assertTablesEqual(x, 't')).count, 100);
    assert.equal((await assertTablesEqual(y, 't')).count, 200);
    const origins = await x.dst.unsafe<{ roname: string }[]>(`SELECT roname FROM pg_replication_origin WHERE roname LIKE 'pgtide_twin%' ORDER BY 1`);
    assert.equal(origins.length, 2, `one origin per target database, the old-style one dropped: ${origins.map((o) => o.roname).join(', ')}`);
    assert.ok(origins.every((o) => /^pgtide_twin_\d+$/.test(o.roname)), origins.map((o) => o.roname).join(', '));
    await ex.stop();
    await ey.stop();
  });

  it('a first start that died after recording its intent drops its own leftover slot and starts over', async () => {
    const pair = await databasePair(scope, clusters, 'intent');
    await ddlBoth(pair, TABLE_DDL);
    await pair.src.unsafe(`INSERT INTO t SELECT g, 'v' FROM generate_series(1, 20) g`);
    // What a start killed between CREATE_REPLICATION_SLOT and recording its start point leaves.
    const first = await runUntilSettled(startEngine(scope, parseConfig(configInput(pair, { name: 'intent', copy: { enabled: false } }))));
    assert.equal(first.streamed, true, `a first start streams (error: ${String(first.error)})`);
    await pair.dst.unsafe(`
      UPDATE pgtide.subscription SET start_lsn = NULL, slot_state = 'creating', acked_lsn = NULL WHERE name = 'intent';
      UPDATE pgtide.table_state SET state = 'init', sync_lsn = NULL WHERE subscription = 'intent';
      DELETE FROM pgtide.apply_progress WHERE subscription = 'intent'`);
    const [before] = await pair.src.unsafe<{ lsn: string }[]>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'intent_slot'`);
    assert.ok(before, 'the leftover slot exists');
    const engine = await startStreaming(scope, pair, { name: 'intent' });
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 't');
    const [state] = await pair.dst.unsafe<{ slot_state: string; recreated: boolean }[]>(
      `SELECT slot_state, start_lsn > $1::pg_lsn AS recreated FROM pgtide.subscription WHERE name = 'intent'`, [before.lsn]);
    assert.deepEqual({ ...state }, { slot_state: 'created', recreated: true }, 'the slot was made again and recorded');
    await engine.stop();
  });

  it('a slot dropped on the source is reported as missing, with pgtide resync as the way out', async () => {
    const pair = await databasePair(scope, clusters, 'missing');
    await ddlBoth(pair, TABLE_DDL);
    const first = await startStreaming(scope, pair, { name: 'missing' });
    await pair.src.unsafe(`INSERT INTO t SELECT g, 'v' FROM generate_series(1, 20) g`);
    await waitForCatchUp(pair, { engine: first });
    await first.stop();
    await pair.src.unsafe(`SELECT pg_drop_replication_slot('missing_slot')`);
    await pair.src.unsafe(`INSERT INTO t SELECT g, 'while no slot' FROM generate_series(21, 30) g`);
    const refused = await runUntilSettled(startEngine(scope, parseConfig(configInput(pair, { name: 'missing' }))));
    assert.equal(refused.streamed, false);
    assert.equal(codeOf(refused.error), 'SLOT_MISSING');
    assert.match((refused.error as Error).message, /pgtide resync/);
    const resync = await runCli(scope, ['resync', '--config', writeConfigFile(scope, cliConfig(pair, { name: 'missing' }))]);
    assert.equal(resync.code, 0, resync.stderr);
    assert.match(resync.stdout, /slot dropped: no/);
    const again = await startStreaming(scope, pair, { name: 'missing' });
    await waitForCatchUp(pair, { engine: again });
    assert.equal((await assertTablesEqual(pair, 't')).count, 30);
    await again.stop();
  });

  it('case 11: on an idle source the slot advances and status shows lag 0 bytes, 0 seconds', async () => {
    const pair = await databasePair(scope, clusters, 'c11');
    await ddlBoth(pair, TABLE_DDL);
    const input: ConfigInput = configInput(pair, { name: 'idle' });
    const engine = await startStreaming(scope, pair, { name: 'idle' });
    await pair.src.unsafe(`INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g`);
    await waitForCatchUp(pair, { engine });
    const [before] = await pair.dst.unsafe<{ commit_time: Date }[]>(`SELECT commit_time FROM pgtide.apply_progress WHERE subscription = 'idle'`);
    // WAL that holds no transaction of this database: a checkpoint, and a write in another database.
    await pair.src.unsafe(`CHECKPOINT`);
    const other = pinnedSql(scope, clusters.source, 'postgres');
    await other.unsafe(`CREATE TABLE IF NOT EXISTS c11_other (x int); INSERT INTO c11_other VALUES (1)`);
    const [{ lsn: walAfter } = { lsn: '' }] = await pair.src.unsafe<{ lsn: string }[]>(`SELECT pg_current_wal_lsn()::text AS lsn`);
    const config = parseConfig(input);
    let last = '';
    const report = await waitFor('status to show lag 0', async () => {
      const r = await collectStatus(config);
      last = formatStatus(r);
      return r.lagBytes === 0 && r.lagSeconds === 0 ? r : undefined;
    }, { timeoutMs: 30_000, intervalMs: 500 }).catch((error: unknown) => { throw new Error(`${String(error)}\nlast status:\n${last}`); });
    assert.match(formatStatus(report), /lag\s+0 B, 0\.0 s/);
    const [slot] = await pair.src.unsafe<{ ok: boolean }[]>(`SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'idle_slot'`, [walAfter]);
    assert.equal(slot?.ok, true, 'the slot moved past WAL written while this database was idle');
    // The heartbeat (every statusIntervalMs by default, 1 s here) is a source transaction applied like any other.
    assert.ok(before, 'the engine recorded its progress');
    await waitFor('a heartbeat committed on the idle source to reach the target', async () => {
      const [row] = await pair.dst.unsafe<{ commit_time: Date }[]>(`SELECT commit_time FROM pgtide.apply_progress WHERE subscription = 'idle'`);
      return row && row.commit_time > before.commit_time ? true : undefined;
    }, { timeoutMs: 20_000, intervalMs: 200 });
    await engine.stop();
  });
  // Last in the file: it lowers max_slot_wal_keep_size on the shared source, which would also
  // invalidate the (stopped) slots of earlier tests.
  it('an invalidated slot (wal_status lost) is refused with the way out', async () => {
    const pair = await databasePair(scope, clusters, 'lost');
    await ddlBoth(pair, TABLE_DDL);
    const first = await startStreaming(scope, pair, { name: 'lost' });
    await pair.src.unsafe(`INSERT INTO t VALUES (1, 'v')`);
    await waitForCatchUp(pair, { engine: first });
    await first.stop();
    const admin = pinnedSql(scope, clusters.source, 'postgres');
    await admin.unsafe(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
    await admin.unsafe(`SELECT pg_reload_conf()`);
    try {
      await waitFor('the slot to be invalidated', async () => {
        await admin.unsafe(`CREATE TABLE IF NOT EXISTS lost_filler (x int); INSERT INTO lost_filler VALUES (1)`);
        await admin.unsafe(`SELECT pg_switch_wal()`);
        await admin.unsafe(`CHECKPOINT`);
        const [row] = await admin.unsafe<{ wal_status: string | null }[]>(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'`);
        return row?.wal_status === 'lost' ? true : undefined;
      }, { timeoutMs: 60_000, intervalMs: 100 });
    } finally {
      await admin.unsafe(`ALTER SYSTEM RESET max_slot_wal_keep_size`);
      await admin.unsafe(`SELECT pg_reload_conf()`);
    }
    const refused = await runUntilSettled(startEngine(scope, parseConfig(configInput(pair, { name: 'lost' }))));
    assert.equal(refused.streamed, false);
    assert.equal(codeOf(refused.error), 'SLOT_INVALIDATED');
    assert.match((refused.error as Error).message, /pgtide resync/);
  });
});
