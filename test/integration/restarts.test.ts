/**
 * Servers and connections that go away while pgtide (in-process) streams under
 * a workload: a restart of the target, a restart of the source, the apply
 * session killed again and again in the middle of large transactions, and the
 * walsender killed mid-stream. pgtide must reconnect by itself and converge to
 * exactly the source's rows: nothing lost, nothing applied twice.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  TestScope, startPair, databasePair, ddlBoth, startStreaming, waitForCatchUp, Workload, churnStep, assertChurnEqual, CHURN_DDL, prng,
  type Pair, type RunningEngine,
} from '../support/replication.js';

/** Generous: the engine's backoff grows to 30 s between attempts. */
const CONVERGE_MS = 90_000;

describe('server restarts and lost connections', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let clusters: Pair;
  let pair: Pair;
  let engine: RunningEngine;
  const catchUp = () => waitForCatchUp(pair, { engine, timeoutMs: CONVERGE_MS });

  before(async () => {
    clusters = await startPair(scope, { name: 'restarts' });
  });

  after(() => scope.cleanup());

  /**
   * Each test replicates its own database with its own engine (slot, origin,
   * state), so an engine left stuck by one failure does not fail the next test.
   */
  const scenario = (database: string, body: () => Promise<void>) => async () => {
    pair = await databasePair(scope, clusters, database);
    await ddlBoth(pair, CHURN_DDL);
    await pair.src.unsafe(`INSERT INTO churn_acct (balance) SELECT g FROM generate_series(1, 500) g; INSERT INTO churn_log SELECT g % 20, 'same' FROM generate_series(1, 200) g`);
    engine = await startStreaming(scope, pair, { name: database, apply: { batchMaxAgeMs: 10, batchMaxChanges: 500 } });
    try {
      await catchUp();
      await body();
    } finally {
      await engine.stop().catch(() => {});
    }
  };

  it('reconnects to the target after it restarts, and converges', scenario('target_restart', async () => {
    const load = new Workload(pair.src, churnStep(), { seed: 1 }).start();
    try {
      await sleep(1500);
      await pair.target.restart();
      await sleep(1500);
    } finally {
      await load.stop();
    }
    assert.ok(load.committed > 20, `the workload committed transactions (${load.committed}; last error: ${String(load.lastError)})`);
    await catchUp();
    await assertChurnEqual(pair);
    assert.equal(engine.finished, false, 'the engine is still running');
  }));

  it('reconnects to the source after it restarts, and converges', scenario('source_restart', async () => {
    // The workload pauses while the source is down: postgres.js 3.4.9 can throw an uncatchable
    // TypeError from a client whose socket closes under a pending write (porsager/postgres#1208),
    // and the test's own clients must not be the ones to trip it. pgtide's own sessions stay up.
    const before = new Workload(pair.src, churnStep(), { seed: 2 }).start();
    await sleep(1500);
    await before.stop();
    await pair.source.stopServer();
    await sleep(2000);
    await pair.source.startServer();
    const afterwards = new Workload(pair.src, churnStep(), { seed: 22 }).start();
    await sleep(1500);
    await afterwards.stop();
    assert.ok(afterwards.committed > 5, `the workload committed transactions after the restart (${afterwards.committed}; last error: ${String(afterwards.lastError)})`);
    await catchUp();
    await assertChurnEqual(pair);
    assert.equal(engine.finished, false, 'the engine is still running');
  }));

  it('converges when the walsender is killed again and again mid-stream', scenario('walsender_kill', async () => {
    const load = new Workload(pair.src, churnStep({ bigEvery: 15 }), { seed: 3 }).start();
    const rnd = prng(33);
    try {
      for (let k = 0; k < 6; k++) {
        await sleep(400 + rnd() * 800);
        await pair.src.unsafe(`SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'pgtide' AND pid IN (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'walsender_kill_slot')`);
      }
    } finally {
      await load.stop();
    }
    await catchUp();
    await assertChurnEqual(pair);
  }));

  // The cause of the kill -9 loss (docs/investigations/kill9-loss.md): since PostgreSQL 16 an
  // aborted transaction moves the session's replication origin to what xact_setup was given.
  // Here an aborted transaction does that on purpose (PG 14/15, where aborts do not move it,
  // get the same effect from pg_replication_origin_advance), past source transactions not yet
  // applied. pgtide must resume from its transactional progress row, not from the origin.
  it('resumes from its own progress row when an aborted transaction moved the replication origin ahead', scenario('origin_ahead', async () => {
    const warm = new Workload(pair.src, churnStep(), { seed: 5 }).start();
    await sleep(800);
    await warm.stop();
    await catchUp();
    await engine.stop();
    const [applied] = await pair.dst.unsafe<{ lsn: string }[]>(`SELECT end_lsn::text AS lsn FROM pgtide.apply_progress WHERE subscription = 'origin_ahead'`);
    assert.ok(applied, 'the engine recorded its progress');
    // Source transactions committed while pgtide is stopped: the ones the moved origin would skip.
    const missed = new Workload(pair.src, churnStep(), { seed: 55 }).start();
    await sleep(1000);
    await missed.stop();
    assert.ok(missed.committed > 5, `the workload committed transactions (${missed.committed}; last error: ${String(missed.lastError)})`);
    const [current] = await pair.src.unsafe<{ lsn: string }[]>(`SELECT pg_current_wal_lsn()::text AS lsn`);
    const ahead = current!.lsn;
    // Origin names carry the target database's OID (unique per target cluster).
    const [named] = await pair.dst.unsafe<{ name: string }[]>(`SELECT 'pgtide_origin_ahead_' || oid AS name FROM pg_database WHERE datname = current_database()`);
    const origin = named!.name;
    await pair.dst.reserve().then(async (session) => {
      try {
        await session.unsafe(`SELECT pg_replication_origin_session_setup($1)`, [origin]);
        await session.unsafe(`BEGIN`);
        await session.unsafe(`INSERT INTO churn_log VALUES (-99, 'rolled back')`);
        await session.unsafe(`SELECT pg_replication_origin_xact_setup($1::text::pg_lsn, now())`, [ahead]);
        await session.unsafe(`ROLLBACK`);
        await session.unsafe(`SELECT pg_replication_origin_session_reset()`);
      } finally {
        session.release();
      }
    });
    if (pair.major < 16) await pair.dst.unsafe(`SELECT pg_replication_origin_advance($1, $2::text::pg_lsn)`, [origin, ahead]);
    const [moved] = await pair.dst.unsafe<{ lsn: string }[]>(`SELECT pg_replication_origin_progress($1, true)::text AS lsn`, [origin]);
    assert.equal(moved!.lsn, ahead, `the aborted transaction moved the origin ahead (PostgreSQL ${pair.major})`);
    engine = await startStreaming(scope, pair, { name: 'origin_ahead', apply: { batchMaxAgeMs: 10, batchMaxChanges: 500 } });
    await catchUp();
    await assertChurnEqual(pair);
    const [originRow] = await pair.dst.unsafe<{ lsn: string }[]>(`SELECT pg_replication_origin_progress($1, true)::text AS lsn`, [origin]);
    const [progress] = await pair.dst.unsafe<{ lsn: string }[]>(`SELECT end_lsn::text AS lsn FROM pgtide.apply_progress WHERE subscription = 'origin_ahead'`);
    assert.equal(originRow!.lsn, progress!.lsn, 'the origin agrees with the progress row again');
  }));

  it('applies a large transaction exactly once when the apply session is killed again and again while applying it', scenario('apply_kill', async () => {
    // Two large transactions (streamed, replayed at commit in many statements: batchMaxChanges is 500).
    await pair.src.unsafe(`INSERT INTO churn_big (batch, payload) SELECT -1, repeat(md5(g::text), 2) FROM generate_series(1, 30000) g;
                           INSERT INTO churn_log SELECT -1, 'bulk' FROM generate_series(1, 30000) g`);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO churn_log SELECT -2, 'bulk' FROM generate_series(1, 30000) g`);
      await tx.unsafe(`UPDATE churn_big SET payload = 'x' WHERE batch = -1 AND id % 2 = 0`);
    });
    const rnd = prng(44);
    const until = Date.now() + 8000;
    let kills = 0;
    const killErrors: string[] = [];
    while (Date.now() < until) {
      // The test's own client may see its query fail while backends die around it; that is
      // not what is under test (pgtide's convergence is), so such a round is just retried.
      const killed = await pair.dst.unsafe(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'pgtide-apply' AND datname = 'apply_kill'`)
        .catch((error: unknown) => { killErrors.push(String(error)); return []; });
      kills += killed.length;
      await sleep(30 + rnd() * 150);
    }
    assert.ok(kills > 0, `the apply session was killed at least once (errors of the killing client: ${killErrors.join('; ') || 'none'})`);
    await catchUp();
    await assertChurnEqual(pair);
  }));
});
