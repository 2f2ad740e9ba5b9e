/**
 * oltp-detect: pgtide's apply throughput with conflict detection on (the
 * default; no conflicts happen) against detection off (`conflicts.detect:
 * false`: the plain statements, as before detection existed). Issue 14 asks
 * for "within 10 %".
 *
 * pgtide only, one pair. The measure is oltp's backlog drain (the live run is
 * bounded by the workload, not by apply): with pgtide stopped, pgbench's
 * TPC-B-like transactions run D seconds; pgtide is started with one setting
 * and the time until it applied the whole backlog is taken. Each round drains
 * one backlog with detection on and one with it off, alternating which goes
 * first; with --repeat the figures are medians. With --with-resolver, each
 * round also drains one with every table under a custom resolver (policy
 * custom, a module that would keep the local row): no conflict happens, so
 * every probe stays optimistic (pipelined; resolver-apply.ts) and this
 * measures what the probes cost against detection on. Run it with:
 *
 *   node dist/bench/run.js oltp-detect --repeat 3 [--with-resolver]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import { barrier, createMarker, currentLsn, MARKER_TABLE, rowCount, seconds, type Table } from '../lib/db.js';
import { HISTORY, loadPgbench, pgbenchDdl, PGBENCH_TABLES, runTpcb } from '../lib/pgbench.js';
import { setupFor, startPair, waitApplied, MINUTE } from '../lib/pair.js';
import { verifyTables } from '../lib/verify.js';
import { median } from '../lib/stats.js';
import { Cleanup, errorMessage } from '../lib/cleanup.js';
import type { MetricSpec, ScenarioOutcome, Failure } from '../lib/report.js';
import { PgtideReplicator } from '../runners/pgtide.js';

const TABLES: readonly Table[] = [...PGBENCH_TABLES, MARKER_TABLE];

const METRICS: readonly MetricSpec[] = [
  { key: 'on.drain_tps', label: 'detection on: backlog drain rate', unit: 'tx/s', better: 'higher' },
  { key: 'off.drain_tps', label: 'detection off: backlog drain rate', unit: 'tx/s', better: 'higher' },
  { key: 'ratio', label: 'on / off (goal ≥ 0.90)', unit: '×', better: 'info' },
  { key: 'on.drain_s', label: 'detection on: drain time', unit: 's', better: 'lower' },
  { key: 'off.drain_s', label: 'detection off: drain time', unit: 's', better: 'lower' },
  { key: 'transactions', label: 'backlog transactions (mean)', unit: 'tx', better: 'info' },
  { key: 'custom.drain_tps', label: 'custom resolver: backlog drain rate', unit: 'tx/s', better: 'higher' },
  { key: 'custom_ratio', label: 'custom resolver / detection on', unit: '×', better: 'info' },
];

type Setting = 'on' | 'off' | 'custom';

async function run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { oltpScale: scale, oltpSeconds: duration, oltpClients: clients } = ctx.options;
  const notes: string[] = [];
  const failures: Failure[] = [];
  const drains: Record<Setting, { tps: number[]; s: number[] }> = { on: { tps: [], s: [] }, off: { tps: [], s: [] }, custom: { tps: [], s: [] } };
  const transactions: number[] = [];
  const cleanup = new Cleanup();
  try {
    const pair = await startPair(ctx, 'oltp-detect', cleanup);
    await loadPgbench(pair.sourceSql, scale);
    await createMarker(pair.sourceSql, true);
    await pair.targetSql.unsafe(pgbenchDdl(true));
    await createMarker(pair.targetSql, false);
    const setup = setupFor(ctx, pair.source, pair.sourceSql, pair.target, pair.targetSql, TABLES);
    // Two processes of the same subscription (same name, slot and state), never running together.
    const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-bench-resolver-'));
    cleanup.add('remove the resolver module', async () => rmSync(dir, { recursive: true, force: true }));
    const resolver = path.join(dir, 'keep-local.mjs');
    writeFileSync(resolver, `export default () => 'skip';\n`);
    const replicators: Record<Setting, PgtideReplicator> = {
      on: new PgtideReplicator(setup, { conflictDetect: true }),
      off: new PgtideReplicator(setup, { conflictDetect: false }),
      custom: new PgtideReplicator(setup, { conflictResolver: resolver }),
    };
    cleanup.add('stop pgtide (detection on)', () => replicators.on.stop());
    cleanup.add('stop pgtide (detection off)', () => replicators.off.stop());
    cleanup.add('stop pgtide (custom resolver)', () => replicators.custom.stop());
    const settings: readonly Setting[] = ctx.options.withResolver ? ['on', 'off', 'custom'] : ['on', 'off'];
    for (const setting of settings) notes.push(replicators[setting].settings);
    const started = new Set<Setting>(['on']);
    let running: Setting = 'on';
    await replicators.on.start();
    await replicators.on.waitCopyDone(Math.max(5, scale) * MINUTE);
    await waitApplied(replicators.on, await barrier(pair.sourceSql), 'pgtide to catch up after the copy', 5 * MINUTE);

    for (let round = 0; round < ctx.options.repeat; round++) {
      const order: readonly Setting[] = round % 2 === 0 ? settings : [...settings].reverse();
      for (const setting of order) {
        ctx.log(`round ${round + 1}/${ctx.options.repeat}, detection ${setting}: ${duration} s backlog`);
        await replicators[running].pause();
        const backlogHistory = await rowCount(pair.sourceSql, HISTORY);
        const backlogStart = await currentLsn(pair.sourceSql);
        await runTpcb(pair.source.url, { clients, seconds: duration, scale, seed: 201 + round * 3 + settings.indexOf(setting) });
        const backlogEnd = await barrier(pair.sourceSql);
        const backlogTx = (await rowCount(pair.sourceSql, HISTORY)) - backlogHistory;
        const resumed = performance.now();
        const replicator = replicators[setting];
        if (started.has(setting)) await replicator.resume();
        else {
          started.add(setting);
          await replicator.start();
        }
        running = setting;
        const drained = await waitApplied(replicator, backlogEnd, `pgtide (detection ${setting}) to drain the backlog`, Math.max(5 * MINUTE, duration * 20_000), 20);
        const drain = seconds(resumed, drained);
        drains[setting].tps.push(backlogTx / drain);
        drains[setting].s.push(drain);
        transactions.push(backlogTx);
        notes.push(`round ${round + 1}, detection ${setting}: ${backlogTx} transactions, ${(Number(backlogEnd - backlogStart) / 2 ** 20).toFixed(1)} MiB of WAL, drained in ${drain.toFixed(2)} s`);
      }
    }
    notes.push(await verifyTables(pair.sourceSql, pair.targetSql, TABLES, 'after the last drain'));
  } catch (error) {
    failures.push({ side: 'pgtide', kind: 'error', message: error instanceof Error ? (error.stack ?? error.message) : errorMessage(error) });
  } finally {
    await cleanup.runAll(ctx.log);
  }
  const values: Record<string, number> = {};
  if (drains.on.tps.length > 0 && drains.off.tps.length > 0) {
    const on = median(drains.on.tps);
    const off = median(drains.off.tps);
    Object.assign(values, {
      'on.drain_tps': on, 'off.drain_tps': off, ratio: on / off,
      'on.drain_s': median(drains.on.s), 'off.drain_s': median(drains.off.s),
      transactions: transactions.reduce((a, b) => a + b, 0) / transactions.length,
    });
    notes.unshift(`detection on / off: ${(on / off).toFixed(3)} (medians of ${drains.on.tps.length} drain(s) each; goal ≥ 0.90)`);
    if (drains.custom.tps.length > 0) {
      const custom = median(drains.custom.tps);
      Object.assign(values, { 'custom.drain_tps': custom, custom_ratio: custom / on });
      notes.unshift(`custom resolver / detection on: ${(custom / on).toFixed(3)}`);
    }
  }
  return {
    sizes: { pgbenchScale: scale, clients, durationSeconds: duration, rounds: ctx.options.repeat },
    metrics: METRICS,
    values: { pgtide: values },
    notes: [
      `pgtide only (the built-in column stays empty): TPC-B-like transactions, ${clients} clients, scale ${scale}; each round drains a ${duration} s backlog with detection on and one with it off, alternating which goes first`,
      'drain rate = source transactions in the backlog / time from starting pgtide until it applied a marker committed after the backlog; no conflicts happen, so this is the cost of detecting them',
      ...notes,
    ],
    failures,
  };
}

export const oltpDetect: Scenario = { name: 'oltp-detect', title: 'OLTP apply throughput, conflict detection on vs off (no conflicts)', run };
