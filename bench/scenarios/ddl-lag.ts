/**
 * ddl-lag: the apply lag an additive schema change adds under load (issue 13's
 * target: under 1 s). pgbench's TPC-B-like transactions run against the
 * source with pgtide's DDL capture on; halfway through, `ALTER TABLE
 * pgbench_accounts ADD COLUMN … DEFAULT …` runs on the source. pgtide applies
 * it on the target as a barrier in stream order (docs/ddl.md).
 *
 * The lag (seconds, from the same 200 ms samples as oltp) is reported in
 * three windows: before the ALTER, the 5 s from the ALTER on, and after those.
 * Also: how long the ALTER took on the source (it waits for the lock on
 * pgbench_accounts, and the workload waits for it), and when the column was
 * visible on the target. pgtide only: the built-in subscriber does not
 * replicate DDL (its worker stops at the first row with the new column).
 */
import { performance } from 'node:perf_hooks';
import type postgres from 'postgres';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import { runSides } from '../lib/scenario.js';
import { barrier, createMarker, currentLsn, MARKER_TABLE, sleep, type Table } from '../lib/db.js';
import { loadPgbench, pgbenchDdl, PGBENCH_TABLES, runTpcb } from '../lib/pgbench.js';
import { setupFor, startPair, waitApplied, MINUTE } from '../lib/pair.js';
import { verifyTables } from '../lib/verify.js';
import { lagSeconds, percentile, type LagSample } from '../lib/stats.js';
import type { MetricSpec, ScenarioOutcome } from '../lib/report.js';
import type { Replicator } from '../runners/types.js';
import { PgtideReplicator } from '../runners/pgtide.js';
import { sampleLag } from '../lib/lag-sampler.js';

const TABLES: readonly Table[] = [...PGBENCH_TABLES, MARKER_TABLE];
const WINDOW_MS = 5000;
const DDL = `ALTER TABLE pgbench_accounts ADD COLUMN note text DEFAULT 'n/a'`;

const METRICS: readonly MetricSpec[] = [
  { key: 'workload_tps', label: 'source workload rate', unit: 'tx/s', better: 'info' },
  { key: 'alter_ms', label: 'ALTER TABLE on the source (lock wait included)', unit: 'ms', better: 'lower' },
  { key: 'visible_s', label: 'column visible on the target after the ALTER returned', unit: 's', better: 'lower' },
  ...(['before', 'at', 'after'] as const).flatMap((w) => [
    { key: `${w}.lag_s_p50`, label: `lag ${w === 'at' ? 'from the ALTER, 5 s' : `${w} the ALTER`} p50`, unit: 's', better: 'lower' as const },
    { key: `${w}.lag_s_p99`, label: `lag ${w === 'at' ? 'from the ALTER, 5 s' : `${w} the ALTER`} p99`, unit: 's', better: 'lower' as const },
    { key: `${w}.lag_s_max`, label: `lag ${w === 'at' ? 'from the ALTER, 5 s' : `${w} the ALTER`} max`, unit: 's', better: 'lower' as const },
  ]),
];


async function columnVisible(targetSql: postgres.Sql): Promise<boolean> {
  const [row] = await targetSql<{ ok: boolean }[]>`SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgbench_accounts'::regclass AND attname = 'note' AND NOT attisdropped) AS ok`;
  return row?.ok ?? false;
}

async function run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { oltpScale: scale, oltpSeconds: duration, oltpClients: clients } = ctx.options;
  const options = { ...ctx.options, sides: ctx.options.sides.filter((s) => s === 'pgtide') };
  if (options.sides.length === 0) return { sizes: {}, metrics: METRICS, values: {}, notes: [], failures: [], skipped: 'pgtide only: the built-in subscriber does not replicate DDL' };

  const sides = await runSides({ ...ctx, options }, async (side, cleanup, round) => {
    const pair = await startPair(ctx, `ddl-lag-${round}`, cleanup);
    await loadPgbench(pair.sourceSql, scale);
    await createMarker(pair.sourceSql, true);
    await pair.targetSql.unsafe(pgbenchDdl(true));
    await createMarker(pair.targetSql, false);
    const setup = setupFor(ctx, pair.source, pair.sourceSql, pair.target, pair.targetSql, TABLES);
    const replicator: Replicator = new PgtideReplicator(setup, { streamedApply: ctx.options.streamedApply, copyMinRows: ctx.options.copyMinRows, ddlCapture: true });
    cleanup.add(`stop ${side}`, () => replicator.stop());
    await replicator.start();
    await replicator.waitCopyDone(Math.max(5, scale) * MINUTE);
    await waitApplied(replicator, await barrier(pair.sourceSql), 'pgtide to catch up after the copy', 5 * MINUTE);

    ctx.log(`live run, ${duration} s, ${DDL} at ${(duration / 2).toFixed(1)} s`);
    let sampling = true;
    const lagSamples = sampleLag(pair.sourceSql, replicator, () => !sampling);
    lagSamples.catch(() => {});
    const workload = runTpcb(pair.source.url, { clients, seconds: duration, scale, seed: 1 + round });
    workload.catch(() => {});
    await sleep(duration * 500);
    const alterStart = performance.now();
    await pair.sourceSql.unsafe(DDL);
    const alterEnd = performance.now();
    let visibleAt: number | undefined;
    while (visibleAt === undefined && performance.now() - alterEnd < 60_000) {
      if (await columnVisible(pair.targetSql)) visibleAt = performance.now();
      else await sleep(20);
    }
    const result = await workload;
    sampling = false;
    const samples = await lagSamples;
    await waitApplied(replicator, await barrier(pair.sourceSql), 'pgtide to catch up after the live run', 10 * MINUTE);
    await replicator.checkHealth();
    if (visibleAt === undefined) throw new Error('the added column did not reach the target within 60 s');

    const lags = lagSeconds(samples);
    const window = (w: 'before' | 'at' | 'after'): number[] => lags.filter((_, i) => {
      const at = samples[i]!.atMs;
      return w === 'before' ? at < alterStart : w === 'at' ? at >= alterStart && at < alterStart + WINDOW_MS : at >= alterStart + WINDOW_MS;
    });
    const values: Record<string, number> = {
      workload_tps: result.transactions / result.seconds,
      alter_ms: alterEnd - alterStart,
      visible_s: (visibleAt - alterEnd) / 1000,
    };
    for (const w of ['before', 'at', 'after'] as const) {
      const xs = window(w);
      if (xs.length === 0) continue;
      Object.assign(values, { [`${w}.lag_s_p50`]: percentile(xs, 50), [`${w}.lag_s_p99`]: percentile(xs, 99), [`${w}.lag_s_max`]: Math.max(...xs) });
    }
    const notes = [replicator.settings, `${result.transactions} transactions in ${result.seconds.toFixed(1)} s; ${samples.length} lag samples (${window('before').length} before, ${window('at').length} at, ${window('after').length} after)`];
    notes.push(await verifyTables(pair.sourceSql, pair.targetSql, TABLES, 'after the live run with the ALTER'));
    return { values, notes };
  });

  return {
    sizes: { pgbenchScale: scale, clients, durationSeconds: duration },
    metrics: METRICS,
    values: sides.values,
    notes: [
      `TPC-B-like transactions, ${clients} clients, scale ${scale}, ${duration} s; \`${DDL}\` on the source halfway through, with ddl.capture on`,
      'lag seconds = how long ago the source was at the target\'s applied LSN (200 ms samples); windows: before the ALTER started, the 5 s from its start, after those',
      'pgtide only: the built-in subscriber does not replicate DDL',
      ...sides.notes,
    ],
    failures: sides.failures,
  };
}

export const ddlLag: Scenario = { name: 'ddl-lag', title: 'DDL: apply lag of an ADD COLUMN under pgbench load', run };
