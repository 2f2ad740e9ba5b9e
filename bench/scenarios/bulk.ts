/**
 * bulk: steady-state replication of three big statements, each one source
 * transaction: INSERT N rows, UPDATE every row, DELETE every row.
 *
 * For each: end-to-end (start of the source transaction until it is committed
 * on the target) and catch-up (source COMMIT returned until committed on the
 * target). Limits: the statement run directly on a target, and the walsender
 * alone decoding the transaction (peek, no network, no apply).
 */
import { performance } from 'node:perf_hooks';
import type postgres from 'postgres';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import { createReplicator, runLimit, runSides } from '../lib/scenario.js';
import { createMarker, inSourceTransaction, MARKER_TABLE, qualified, seconds, table, type Table } from '../lib/db.js';
import { setupFor, startPair, waitApplied, MINUTE } from '../lib/pair.js';
import { createLimitPublication, createLimitSlot, peek, LIMIT_SLOT } from '../runners/limits.js';
import { dropSlotIfExists } from '../lib/db.js';
import { verifyTables } from '../lib/verify.js';
import { MemorySampler } from '../lib/memory.js';
import type { MetricSpec, ScenarioOutcome } from '../lib/report.js';

const BULK = table('public', 'bench_bulk');
const TABLES: readonly Table[] = [BULK, MARKER_TABLE];

interface Statement { readonly key: 'insert' | 'update' | 'delete'; readonly sql: (rows: number) => string }
const STATEMENTS: readonly Statement[] = [
  { key: 'insert', sql: (rows) => `INSERT INTO ${qualified(BULK)} (id, v, t) SELECT g, g % 1000, 'row ' || g FROM generate_series(1, ${rows}) AS g` },
  { key: 'update', sql: () => `UPDATE ${qualified(BULK)} SET v = v + 1, t = t || '+'` },
  { key: 'delete', sql: () => `DELETE FROM ${qualified(BULK)}` },
];

async function createTables(sql: postgres.Sql, marker: boolean): Promise<void> {
  await sql.unsafe(`CREATE TABLE ${qualified(BULK)} (id bigint PRIMARY KEY, v int NOT NULL, t text NOT NULL)`);
  await createMarker(sql, marker);
}

const METRICS: readonly MetricSpec[] = STATEMENTS.flatMap((s): MetricSpec[] => [
  { key: `${s.key}.e2e`, label: `${s.key}: end-to-end`, unit: 's', better: 'lower' },
  { key: `${s.key}.catchup`, label: `${s.key}: catch-up after commit`, unit: 's', better: 'lower' },
  { key: `${s.key}.source`, label: `${s.key}: source statement + commit`, unit: 's', better: 'info' },
]).concat([
  { key: 'memory.peak_rss', label: 'pgtide peak RSS (VmHWM)', unit: 'MiB', better: 'lower' },
  { key: 'memory.replicator', label: 'replicator peak RssAnon', unit: 'MiB', better: 'lower' },
  { key: 'memory.walsender', label: 'walsender peak RssAnon', unit: 'MiB', better: 'lower' },
]);

async function run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const rows = ctx.options.bulkRows;

  const limit = await runLimit(ctx, async (cleanup) => {
    const pair = await startPair(ctx, 'bulk-limit', cleanup);
    await createTables(pair.sourceSql, true);
    await createTables(pair.targetSql, true);
    await createLimitPublication(pair.sourceSql, TABLES);
    const values: Record<string, number> = {};
    const notes: string[] = [];
    for (const statement of STATEMENTS) {
      // A fresh slot per statement: peek then decodes exactly this transaction.
      await dropSlotIfExists(pair.sourceSql, LIMIT_SLOT);
      await createLimitSlot(pair.sourceSql);
      const t0 = performance.now();
      await inSourceTransaction(pair.sourceSql, (tx) => tx.unsafe(statement.sql(rows)));
      values[`${statement.key}.source`] = seconds(t0, performance.now());
      const decoded = await peek(pair.sourceSql, ctx.major);
      values[`${statement.key}.catchup`] = decoded.seconds;
      const t1 = performance.now();
      await pair.targetSql.begin((tx) => tx.unsafe(statement.sql(rows)));
      values[`${statement.key}.e2e`] = seconds(t1, performance.now());
      notes.push(`${statement.key}: direct on target ${values[`${statement.key}.e2e`]!.toFixed(2)} s; walsender decode (peek) ${decoded.seconds.toFixed(2)} s for ${decoded.messages} pgoutput messages`);
    }
    await dropSlotIfExists(pair.sourceSql, LIMIT_SLOT);
    return { values, notes };
  });

  const sides = await runSides(ctx, async (side, cleanup, round) => {
    const pair = await startPair(ctx, `bulk-${side}-${round}`, cleanup);
    await createTables(pair.sourceSql, true);
    await createTables(pair.targetSql, false);
    const replicator = createReplicator(side, setupFor(ctx, pair.source, pair.sourceSql, pair.target, pair.targetSql, TABLES), ctx.options, cleanup);
    await replicator.start();
    await replicator.waitCopyDone(5 * MINUTE);
    // Only there to stop a stuck run; generous next to any real apply rate.
    const hangGuard = Math.max(5 * MINUTE, (rows / 1_000_000) * 10 * MINUTE);
    const sampler = new MemorySampler(() => replicator.processes());
    sampler.start();
    cleanup.add('stop memory sampler', async () => { await sampler.stop(); });
    const values: Record<string, number> = {};
    const notes: string[] = [replicator.settings];
    for (const statement of STATEMENTS) {
      const t0 = performance.now();
      const lsn = await inSourceTransaction(pair.sourceSql, (tx) => tx.unsafe(statement.sql(rows)));
      const t1 = performance.now();
      const t2 = await waitApplied(replicator, lsn, `${side} to apply the ${statement.key}`, hangGuard, 10);
      values[`${statement.key}.source`] = seconds(t0, t1);
      values[`${statement.key}.e2e`] = seconds(t0, t2);
      values[`${statement.key}.catchup`] = seconds(t1, t2);
      // Checked after each statement: after the DELETE both sides are empty,
      // which on its own would prove nothing about the UPDATE.
      notes.push(await verifyTables(pair.sourceSql, pair.targetSql, TABLES, `after ${statement.key}`));
    }
    const peaks = await sampler.stop();
    values['memory.replicator'] = peaks.replicatorAnonBytes / 2 ** 20;
    values['memory.walsender'] = peaks.walsenderAnonBytes / 2 ** 20;
    const hwm = replicator.peakRssBytes();
    if (hwm !== undefined) values['memory.peak_rss'] = hwm / 2 ** 20;
    return { values, notes };
  });

  return {
    sizes: { rows },
    metrics: METRICS,
    values: { ...sides.values, ...(limit.values ? { limit: limit.values } : {}) },
    notes: [
      `one source transaction per statement over ${rows} rows of (bigint pk, int, text)`,
      'end-to-end = BEGIN on the source until the transaction is committed on the target; catch-up = from the source COMMIT returning',
      'limit for end-to-end = the same statement run directly on a target (set-based, no replication); limit for catch-up = walsender decode of the transaction via pg_logical_slot_peek_binary_changes (pgoutput, streaming on, no network)',
      ...limit.notes, ...sides.notes,
    ],
    failures: [...limit.failures, ...sides.failures],
  };
}

export const bulk: Scenario = { name: 'bulk', title: 'Bulk statements: 1 transaction each of INSERT, UPDATE all, DELETE all', run };
