/**
 * Network faults injected with a TCP proxy between pgtide and the target:
 * connections reset under load (issue 10, case 6: pgtide hung for good), a
 * blackholed path (only the watchdog notices it), and a target that is down
 * behind the proxy (case 12: a reconnect storm of 100+ connections a second).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  TestScope, startPair, databasePair, ddlBoth, startStreaming, waitForCatchUp, Workload, churnStep, assertChurnEqual, CHURN_DDL,
  capturingLogger, startEngine, configInput,
  type Pair, type RunningEngine,
} from '../support/replication.js';
import { TcpProxy } from '../../src/harness/tcp-proxy.js';
import { parseConfig } from '../../src/control/config.js';
import type { Cluster } from '../../src/harness/cluster.js';

/** Through the proxy: the same URL with the proxy's port. */
function viaProxy(cluster: Cluster, database: string, proxy: TcpProxy): string {
  return `postgres://${cluster.user}:${cluster.password}@127.0.0.1:${proxy.port}/${encodeURIComponent(database)}`;
}

describe('network faults between pgtide and the target', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let clusters: Pair;

  before(async () => {
    clusters = await startPair(scope, { name: 'faults' });
  });

  after(() => scope.cleanup());

  async function setUp(database: string): Promise<{ pair: Pair; proxy: TcpProxy }> {
    const pair = await databasePair(scope, clusters, database);
    await ddlBoth(pair, CHURN_DDL);
    await pair.src.unsafe(`INSERT INTO churn_acct (balance) SELECT g FROM generate_series(1, 500) g; INSERT INTO churn_log SELECT g % 20, 'same' FROM generate_series(1, 200) g`);
    const proxy = await TcpProxy.start(clusters.target.port);
    scope.defer(`close proxy ${proxy.port}`, () => proxy.close());
    return { pair, proxy };
  }

  it('recovers when every target connection is reset under load (case 6)', async (t) => {
    const { pair, proxy } = await setUp('reset_target');
    const { logger, lines } = capturingLogger();
    const engine = startEngine(scope, parseConfig(configInput({ sourceUrl: pair.sourceUrl, targetUrl: viaProxy(clusters.target, 'reset_target', proxy) }, {
      // The watchdog at 20 s instead of 120 s: twice in about 25 runs (once in CI) the stream
      // stopped with nothing logged after a reset, a wait that only the watchdog ends; its cause
      // is not found yet (ARCHITECTURE.md, "Fault injection"). The test holds pgtide to
      // recovering by itself within its window, whichever of its mechanisms does it, and says so.
      name: 'reset_target', apply: { batchMaxAgeMs: 10, batchMaxChanges: 500 }, stallTimeoutMs: 20_000,
    })), {}, logger);
    await engine.streaming;
    await waitForCatchUp(pair, { engine, timeoutMs: 60_000 });
    // Paced: this test is about hangs, not throughput (that is `npm run bench`). Unpaced, the churn
    // workload outran this test's small batches (batchMaxChanges 500) on a busy 2-core machine, the
    // backlog grew every round (catch-up 4 s, 15 s, 35 s, 60 s, 69 s) and the last wait timed out.
    const load = new Workload(pair.src, churnStep({ bigEvery: 20 }), { seed: 6, pauseMs: 25 }).start();
    try {
      // Each round: reset while statements are in flight, then pgtide must catch up by itself.
      // Before the fix, the clean-up awaited a ROLLBACK queued on the reset connection, which
      // never settled: no log line, no reconnect, no progress.
      for (let round = 0; round < 5; round++) {
        await sleep(300 + round * 200);
        const cut = proxy.resetAll();
        assert.ok(cut > 0, `round ${round}: connections were open through the proxy`);
        const started = Date.now();
        // Generous: each reset restarts the stream from the applied position, and the backlog
        // of large transactions is drained again on a busy 2-core machine (measured 1-30 s).
        await waitForCatchUp(pair, { engine, timeoutMs: 90_000 }).catch((error: unknown) => {
          throw new Error(`round ${round}: ${error instanceof Error ? error.message : String(error)}\nlog tail:\n${lines.slice(-15).join('')}`);
        });
        t.diagnostic(`round ${round}: ${cut} connections reset, caught up in ${Date.now() - started} ms`);
      }
    } finally {
      await load.stop();
    }
    assert.ok(load.committed > 50, `the workload committed transactions (${load.committed})`);
    await waitForCatchUp(pair, { engine, timeoutMs: 45_000 });
    await assertChurnEqual(pair);
    assert.ok(lines.some((l) => /retrying/.test(l)), 'the interruption was logged');
    const stalls = lines.filter((l) => /watchdog/.test(l));
    if (stalls.length > 0) t.diagnostic(`the watchdog ended ${stalls.length} stall(s): ${stalls.join('')}`);
    assert.equal(engine.finished, false, 'the engine is still running');
    await engine.stop();
  });

  it('the watchdog reconnects when the target path turns into a blackhole', async () => {
    const { pair, proxy } = await setUp('blackhole_target');
    const { logger, lines } = capturingLogger();
    const engine = startEngine(scope, parseConfig(configInput({ sourceUrl: pair.sourceUrl, targetUrl: viaProxy(clusters.target, 'blackhole_target', proxy) }, {
      name: 'blackhole_target', apply: { batchMaxAgeMs: 10, batchMaxChanges: 500 }, stallTimeoutMs: 4000,
    })), {}, logger);
    await engine.streaming;
    await waitForCatchUp(pair, { engine, timeoutMs: 60_000 });
    const load = new Workload(pair.src, churnStep(), { seed: 7 }).start();
    try {
      await sleep(800);
      // Open connections stop delivering anything; new ones are forwarded again. No TCP error
      // ever reaches pgtide: only "nothing applied while work is pending" can end the wait.
      const holed = proxy.blackholeAll();
      assert.ok(holed > 0, 'connections were open through the proxy');
      await sleep(1500);
    } finally {
      await load.stop();
    }
    await waitForCatchUp(pair, { engine, timeoutMs: 45_000 }).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\nlog tail:\n${lines.slice(-15).join('')}`);
    });
    await assertChurnEqual(pair);
    assert.ok(lines.some((l) => /watchdog/.test(l)), `the watchdog logged the stall; log tail:\n${lines.slice(-10).join('')}`);
    assert.equal(engine.finished, false, 'the engine is still running');
    await engine.stop();
  });

  for (const mode of ['close', 'reset'] as const) {
    it(`reconnects with backoff while the target behind the proxy is down (${mode}; case 12)`, async (t) => {
      const database = `down_${mode}`;
      const { pair, proxy } = await setUp(database);
      const engine: RunningEngine = await startStreaming(scope, { sourceUrl: pair.sourceUrl, targetUrl: viaProxy(clusters.target, database, proxy) }, {
        name: database, sequences: { enabled: true, intervalMs: 200 },
      });
      await waitForCatchUp(pair, { engine, timeoutMs: 60_000 });
      await proxy.setMode({ kind: mode });
      proxy.resetAll();
      await pair.src.unsafe(`INSERT INTO churn_acct (balance) SELECT g FROM generate_series(1, 50) g`);
      const window = 8_000;
      const from = Date.now();
      await sleep(window);
      const attempts = proxy.attemptsSince(from);
      const perSecond = attempts / (window / 1000);
      t.diagnostic(`connection attempts while the target was down: ${attempts} in ${window / 1000} s (${perSecond.toFixed(1)}/s)`);
      // Engine backoff from 0.5 s, the sequence loop every 200 ms: a handful a second at most.
      // Before the fix: over 100 a second (postgres.js retried the startup at once, forever).
      assert.ok(perSecond <= 8, `connection attempts while the target was down: ${attempts} in ${window / 1000} s (${perSecond.toFixed(1)}/s)`);
      assert.ok(attempts >= 1, 'pgtide kept trying to reconnect');
      assert.equal(engine.finished, false, `the engine is still running (${String(engine.error)})`);
      await proxy.setMode({ kind: 'forward' });
      await waitForCatchUp(pair, { engine, timeoutMs: 60_000 });
      await assertChurnEqual(pair);
      await engine.stop();
    });
  }
});
