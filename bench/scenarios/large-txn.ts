/**
 * large-txn: one source transaction of N row changes (default 2,000,000).
 *
 * Measures how long the target needs to commit it (end-to-end and after the
 * source COMMIT) and the memory the replicator needs for it: pgtide must stay
 * within its memoryCap by spilling, so its peak RSS should not grow with N.
 * Limits: the walsender alone decoding the transaction (peek), and the same
 * INSERT run directly on a target.
 */
import { performance } from 'node:perf_hooks';
import type postgres from 'postgres';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import { createReplicator, runLimit, runSides } from '../lib/scenario.js';
import { createMarker, dropSlotIfExists, inSourceTransaction, MARKER_TABLE, qualified, seconds, table, type Table } from '../lib/db.js';
import { setupFor, startPair, waitApplied, MINUTE } from '../lib/pair.js';
import { createLimitPublication, createLimitSlot, peek, LIMIT_SLOT } from '../runners/limits.js';
import { verifyTables } from '../lib/verify.js';
import { MemorySampler } from '../lib/memory.js';
import type { MetricSpec, ScenarioOutcome } from '../lib/report.js';

const LARGE = table('public', 'bench_large');
const TABLES: readonly Table[] = [LARGE, MARKER_TABLE];

const insert = (changes: number) =>
  `INSERT INTO ${qualified(LARGE)} (id, v, t) SELECT g, g % 1000, 'payload ' || g FROM generate_series(1, ${changes}) AS g`;

async function createTables(sql: postgres.Sql, marker: boolean): Promise<void> {
  await sql.unsafe(`CREATE TABLE ${qualified(LARGE)} (id bigint PRIMARY KEY, v int NOT NULL, t text NOT NULL)`);
  await createMarker(sql, marker);
}

const METRICS: readonly MetricSpec[] = [
  { key: 'e2e', label: 'end-to-end', unit: 's', better: 'lower' },
  { key: 'catchup', label: 'catch-up after commit', unit: 's', better: 'lower' },
  { key: 'source', label: 'source statement + commit', unit: 's', better: 'info' },
  { key: 'changes_per_s', label: 'apply rate (end-to-end)', unit: 'changes/s', better: 'higher' },
  { key: 'memory.peak_rss', label: 'pgtide peak RSS (VmHWM)', unit: 'MiB', better: 'lower' },
  { key: 'memory.replicator', label: 'replicator peak RssAnon', unit: 'MiB', better: 'lower' },
  { key: 'memory.walsender', label: 'walsender peak RssAnon', unit: 'MiB', better: 'lower' },
];

async function run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const changes = ctx.options.largeChanges;

  const limit = await runLimit(ctx, async (cleanup) => {
    const pair = await startPair(ctx, 'large-limit', cleanup);
    await createTables(pair.sourceSql, true);
    await createTables(pair.targetSql, true);
    await createLimitPublication(pair.sourceSql, TABLES);
    await createLimitSlot(pair.sourceSql);
    const t0 = performance.now();
    await inSourceTransaction(pair.sourceSql, (tx) => tx.unsafe(insert(changes)));
    const source = seconds(t0, performance.now());
    const decoded = await peek(pair.sourceSql, ctx.major);
    await dropSlotIfExists(pair.sourceSql, LIMIT_SLOT);
    const t1 = performance.now();
    await pair.targetSql.begin((tx) => tx.unsafe(insert(changes)));
    const direct = seconds(t1, performance.now());
    return {
      values: { e2e: direct, catchup: decoded.seconds, source, changes_per_s: changes / direct },
      notes: [`direct on target ${direct.toFixed(2)} s; walsender decode (peek) ${decoded.seconds.toFixed(2)} s for ${decoded.messages} pgoutput messages`],
    };
  });

  const sides = await runSides(ctx, async (side, cleanup, round) => {
    const pair = await startPair(ctx, `large-${side}-${round}`, cleanup);
    await createTables(pair.sourceSql, true);
    await createTables(pair.targetSql, false);
    const replicator = createReplicator(side, setupFor(ctx, pair.source, pair.sourceSql, pair.target, pair.targetSql, TABLES), ctx.options, cleanup);
    await replicator.start();
    await replicator.waitCopyDone(5 * MINUTE);
    const sampler = new MemorySampler(() => replicator.processes());
    sampler.start();
    cleanup.add('stop memory sampler', async () => { await sampler.stop(); });
    const t0 = performance.now();
    const lsn = await inSourceTransaction(pair.sourceSql, (tx) => tx.unsafe(insert(changes)));
    const t1 = performance.now();
    const t2 = await waitApplied(replicator, lsn, `${side} to apply the ${changes}-row transaction`,
      Math.max(5 * MINUTE, (changes / 1_000_000) * 5 * MINUTE), 20) // a hang guard, ~5 min per million rows;
    const peaks = await sampler.stop();
    const values: Record<string, number> = {
      e2e: seconds(t0, t2),
      catchup: seconds(t1, t2),
      source: seconds(t0, t1),
      changes_per_s: changes / seconds(t0, t2),
      'memory.replicator': peaks.replicatorAnonBytes / 2 ** 20,
      'memory.walsender': peaks.walsenderAnonBytes / 2 ** 20,
    };
    const hwm = replicator.peakRssBytes();
    if (hwm !== undefined) values['memory.peak_rss'] = hwm / 2 ** 20;
    const check = await verifyTables(pair.sourceSql, pair.targetSql, TABLES, 'end of run');
    return { values, notes: [replicator.settings, `memory sampled ${peaks.samples} times`, check] };
  });

  return {
    sizes: { changes },
    metrics: METRICS,
    values: { ...sides.values, ...(limit.values ? { limit: limit.values } : {}) },
    notes: [
      `one INSERT ... SELECT generate_series of ${changes} rows (bigint pk, int, text) in a single source transaction`,
      'memory: RssAnon (private memory, shared_buffers excluded) sampled every 200 ms, summed over the apply processes (built-in: leader + parallel apply workers; pgtide: its node process); VmHWM is the pgtide child\'s kernel-recorded peak RSS',
      'limit for end-to-end = the same INSERT run directly on a target; limit for catch-up = walsender decode of the transaction via peek (pgoutput, streaming on, no network)',
      ...limit.notes, ...sides.notes,
    ],
    failures: [...limit.failures, ...sides.failures],
  };
}

export const largeTxn: Scenario = { name: 'large-txn', title: 'One large transaction: catch-up time and replicator memory', run };
