/**
 * oltp: pgbench's TPC-B-like transactions from 4 clients.
 *
 * 1. live: the workload runs for D seconds while replication keeps up; the
 *    source's WAL position and the target's applied position are sampled
 *    every 200 ms (lag in bytes and in seconds), and the target's applied
 *    transaction rate is measured.
 * 2. backlog: replication is paused (built-in: ALTER SUBSCRIPTION DISABLE;
 *    pgtide: the process is stopped), the workload runs D seconds, replication
 *    resumes and we time how long until the target has applied everything.
 *    Limit: the walsender alone decoding that backlog (peek).
 */
import { performance } from 'node:perf_hooks';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import { createReplicator, runSides } from '../lib/scenario.js';
import { barrier, createMarker, currentLsn, MARKER_TABLE, rowCount, seconds, sleep, type Table } from '../lib/db.js';
import { HISTORY, loadPgbench, pgbenchDdl, PGBENCH_TABLES, runTpcb } from '../lib/pgbench.js';
import { setupFor, startPair, waitApplied, MINUTE } from '../lib/pair.js';
import { createLimitPublication, createLimitSlot, peek, LIMIT_SLOT } from '../runners/limits.js';
import { dropSlotIfExists } from '../lib/db.js';
import { verifyTables } from '../lib/verify.js';
import { lagBytes, lagSeconds, mean, percentile, type LagSample } from '../lib/stats.js';
import type { MetricSpec, ScenarioOutcome } from '../lib/report.js';
import type { Replicator } from '../runners/types.js';
import { sampleLag } from '../lib/lag-sampler.js';
import type postgres from 'postgres';

const TABLES: readonly Table[] = [...PGBENCH_TABLES, MARKER_TABLE];

const METRICS: readonly MetricSpec[] = [
  { key: 'live.workload_tps', label: 'live: source workload rate', unit: 'tx/s', better: 'info' },
  { key: 'live.applied_tps', label: 'live: applied rate (sustained)', unit: 'tx/s', better: 'higher' },
  { key: 'live.lag_bytes_p50', label: 'live: lag p50', unit: 'bytes', better: 'lower' },
  { key: 'live.lag_bytes_p99', label: 'live: lag p99', unit: 'bytes', better: 'lower' },
  { key: 'live.lag_bytes_max', label: 'live: lag max', unit: 'bytes', better: 'lower' },
  { key: 'live.lag_s_p50', label: 'live: lag p50', unit: 's', better: 'lower' },
  { key: 'live.lag_s_p99', label: 'live: lag p99', unit: 's', better: 'lower' },
  { key: 'live.lag_s_max', label: 'live: lag max', unit: 's', better: 'lower' },
  { key: 'live.final_catchup', label: 'live: catch-up after workload end', unit: 's', better: 'lower' },
  { key: 'backlog.transactions', label: 'backlog: transactions', unit: 'tx', better: 'info' },
  { key: 'backlog.wal_mib', label: 'backlog: WAL', unit: 'MiB', better: 'info' },
  { key: 'backlog.drain_s', label: 'backlog: drain time', unit: 's', better: 'lower' },
  { key: 'backlog.drain_tps', label: 'backlog: drain rate', unit: 'tx/s', better: 'higher' },
  { key: 'backlog.drain_mibps', label: 'backlog: drain rate (WAL)', unit: 'MiB/s', better: 'higher' },
];


async function run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { oltpScale: scale, oltpSeconds: duration, oltpClients: clients } = ctx.options;

  const sides = await runSides(ctx, async (side, cleanup, round) => {
    const pair = await startPair(ctx, `oltp-${side}-${round}`, cleanup);
    await loadPgbench(pair.sourceSql, scale);
    await createMarker(pair.sourceSql, true);
    await pair.targetSql.unsafe(pgbenchDdl(true));
    await createMarker(pair.targetSql, false);
    const replicator = createReplicator(side, setupFor(ctx, pair.source, pair.sourceSql, pair.target, pair.targetSql, TABLES), ctx.options, cleanup);
    await replicator.start();
    await replicator.waitCopyDone(Math.max(5, scale) * MINUTE);
    await waitApplied(replicator, await barrier(pair.sourceSql), `${side} to catch up after the copy`, 5 * MINUTE);
    const url = pair.source.url;
    const values: Record<string, number> = {};
    const notes: string[] = [replicator.settings];

    // 1. live
    ctx.log(`${side}: live run, ${duration} s`);
    const historyBefore = await rowCount(pair.targetSql, HISTORY);
    let sampling = true;
    const lagSamples = sampleLag(pair.sourceSql, replicator, () => !sampling);
    // Its error (if any) is rethrown by the await below; without a handler
    // attached now, Node would crash on an "unhandled" rejection first.
    lagSamples.catch(() => {});
    const workload = await runTpcb(url, { clients, seconds: duration, scale, seed: 1 + round });
    const endOfWorkload = performance.now();
    const historyAtEnd = await rowCount(pair.targetSql, HISTORY);
    sampling = false;
    const samples = await lagSamples;
    const caughtUp = await waitApplied(replicator, await barrier(pair.sourceSql), `${side} to catch up after the live run`, 10 * MINUTE);
    const bytes = lagBytes(samples);
    const secs = lagSeconds(samples);
    Object.assign(values, {
      'live.workload_tps': workload.transactions / workload.seconds,
      'live.applied_tps': (historyAtEnd - historyBefore) / workload.seconds,
      'live.lag_bytes_p50': percentile(bytes, 50), 'live.lag_bytes_p99': percentile(bytes, 99), 'live.lag_bytes_max': Math.max(...bytes),
      'live.lag_s_p50': percentile(secs, 50), 'live.lag_s_p99': percentile(secs, 99), 'live.lag_s_max': Math.max(...secs),
      'live.final_catchup': seconds(endOfWorkload, caughtUp),
    });
    notes.push(`live: ${workload.transactions} transactions in ${workload.seconds.toFixed(1)} s, ${samples.length} lag samples`);

    // 2. backlog
    ctx.log(`${side}: backlog run, ${duration} s with replication paused`);
    await replicator.pause();
    // A slot of our own from the same point, for the decode-only limit.
    if (ctx.options.limits) {
      await createLimitPublication(pair.sourceSql, TABLES);
      await createLimitSlot(pair.sourceSql);
    }
    const backlogStart = await currentLsn(pair.sourceSql);
    const backlogHistory = await rowCount(pair.sourceSql, HISTORY);
    const backlog = await runTpcb(url, { clients, seconds: duration, scale, seed: 101 + round });
    const backlogEnd = await barrier(pair.sourceSql);
    const backlogTx = (await rowCount(pair.sourceSql, HISTORY)) - backlogHistory;
    const walBytes = Number(backlogEnd - backlogStart);
    const resumed = performance.now();
    await replicator.resume();
    const drained = await waitApplied(replicator, backlogEnd, `${side} to drain the backlog`, Math.max(5 * MINUTE, duration * 20_000), 20);
    const drain = seconds(resumed, drained);
    Object.assign(values, {
      'backlog.transactions': backlogTx,
      'backlog.wal_mib': walBytes / 2 ** 20,
      'backlog.drain_s': drain,
      'backlog.drain_tps': backlogTx / drain,
      'backlog.drain_mibps': walBytes / 2 ** 20 / drain,
    });
    notes.push(`backlog: ${backlogTx} transactions (${backlog.seconds.toFixed(1)} s at ${(backlog.transactions / backlog.seconds).toFixed(0)} tx/s), ${(walBytes / 2 ** 20).toFixed(1)} MiB of WAL; drained in ${drain.toFixed(2)} s`);
    if (ctx.options.limits) {
      // Decoded after the drain so it does not compete with it for the 2 CPUs.
      const decoded = await peek(pair.sourceSql, ctx.major);
      await dropSlotIfExists(pair.sourceSql, LIMIT_SLOT);
      // Limit figures for this side's own backlog; averaged over sides below.
      Object.assign(values, {
        'limit.drain_s': decoded.seconds,
        'limit.drain_tps': backlogTx / decoded.seconds,
        'limit.drain_mibps': walBytes / 2 ** 20 / decoded.seconds,
      });
      notes.push(`backlog: walsender decode (peek) ${decoded.seconds.toFixed(2)} s for ${decoded.messages} pgoutput messages`);
    }
    notes.push(await verifyTables(pair.sourceSql, pair.targetSql, TABLES, 'after the backlog'));
    return { values, notes };
  });

  // The decode-only limit was measured on each side's own backlog (same
  // duration, so about the same size); the limit column shows their mean.
  const limit: Record<string, number> = {};
  if (ctx.options.limits) {
    for (const key of ['drain_s', 'drain_tps', 'drain_mibps']) {
      const measured = Object.values(sides.values).map((v) => v?.[`limit.${key}`]).filter((v): v is number => v !== undefined);
      if (measured.length > 0) limit[`backlog.${key}`] = mean(measured);
    }
  }

  return {
    sizes: { pgbenchScale: scale, clients, durationSeconds: duration },
    metrics: METRICS,
    values: { ...sides.values, ...(Object.keys(limit).length > 0 ? { limit } : {}) },
    notes: [
      `TPC-B-like transactions (pgbench default script), ${clients} clients, scale ${scale}; live run and backlog run of ${duration} s each`,
      'lag bytes = source pg_current_wal_lsn() - target applied LSN; lag seconds = how long ago the source was at the applied LSN (from the same 200 ms samples)',
      'applied rate = pgbench_history rows that reached the target during the live run / its duration (one per transaction)',
      'drain time runs from resuming replication (ALTER SUBSCRIPTION ENABLE / starting pgtide) until the target applied a marker transaction committed after the backlog',
      'limit = pg_logical_slot_peek_binary_changes (pgoutput, streaming on) over the same backlog: the walsender decoding alone; mean of the sides\' backlogs',
      ...sides.notes,
    ],
    failures: sides.failures,
  };
}

export const oltp: Scenario = { name: 'oltp', title: 'OLTP: TPC-B-like transactions, live lag and backlog drain', run };
