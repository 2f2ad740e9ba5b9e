/**
 * initial-copy: time until every table has been copied and is ready.
 *
 * One source holds the pgbench tables (history pre-filled) and a wide table
 * whose payload is stored out of line (TOAST). Each side copies it into a
 * fresh target cluster with the same DDL; the limit pipes COPY TO STDOUT into
 * COPY FROM STDIN at the same parallelism.
 */
import { performance } from 'node:perf_hooks';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import { createReplicator, runLimit, runSides } from '../lib/scenario.js';
import { Cleanup } from '../lib/cleanup.js';
import { connect, qualified, rowCount, seconds, startBenchCluster, table, tableBytes, type Table } from '../lib/db.js';
import { loadPgbench, pgbenchDdl, PGBENCH_TABLES } from '../lib/pgbench.js';
import { setupFor, startTarget, MINUTE } from '../lib/pair.js';
import { copyPipe } from '../runners/limits.js';
import { verifyTables } from '../lib/verify.js';
import type { MetricSpec, ScenarioOutcome } from '../lib/report.js';

const WIDE = table('public', 'bench_wide');
const TABLES: readonly Table[] = [...PGBENCH_TABLES, WIDE];

/** ~4 KB of incompressible-looking text per row (128 md5 digests), 1,600 rows per scale unit ≈ 6.5 MB. */
const WIDE_ROWS_PER_SCALE = 1600;

function wideDdl(): string {
  // STORAGE EXTERNAL: out of line but uncompressed, so the copy moves TOAST
  // chunks and neither side spends the run in pglz.
  return `CREATE TABLE ${qualified(WIDE)} (id bigint PRIMARY KEY, k int NOT NULL, note text NOT NULL, payload text NOT NULL);
          ALTER TABLE ${qualified(WIDE)} ALTER COLUMN payload SET STORAGE EXTERNAL;`;
}

const METRICS: readonly MetricSpec[] = [
  { key: 'seconds', label: 'time to all tables ready', unit: 's', better: 'lower' },
  { key: 'mbps', label: 'copy throughput', unit: 'MiB/s', better: 'higher' },
  { key: 'rowsps', label: 'copy rate', unit: 'rows/s', better: 'higher' },
];

async function run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const scale = ctx.options.copyScale;
  const shared = new Cleanup();
  try {
    // The source is loaded once and shared: loading is the slowest part, and
    // every side then copies byte-identical data from the same cache state.
    const source = await startBenchCluster(ctx.major, 'copy-src', 'source', shared);
    const sourceSql = connect(source, 'postgres', shared);
    ctx.log(`loading source: pgbench scale ${scale} + ${WIDE_ROWS_PER_SCALE * scale} wide rows`);
    const loadStart = performance.now();
    await loadPgbench(sourceSql, scale, 10_000 * scale);
    await sourceSql.unsafe(wideDdl());
    await sourceSql.unsafe(`
      INSERT INTO ${qualified(WIDE)} (id, k, note, payload)
      SELECT g, g % 1000, 'row ' || g,
             (SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 128) AS i)
      FROM generate_series(1, ${WIDE_ROWS_PER_SCALE * scale}) AS g`);
    await sourceSql.unsafe(`VACUUM ANALYZE ${qualified(WIDE)}`);
    const sizes = new Map<Table, number>();
    for (const t of TABLES) sizes.set(t, await tableBytes(sourceSql, [t]));
    const bytes = [...sizes.values()].reduce((a, b) => a + b, 0);
    let rows = 0;
    for (const t of TABLES) rows += await rowCount(sourceSql, t);
    ctx.log(`source loaded in ${seconds(loadStart, performance.now()).toFixed(1)} s: ${(bytes / 2 ** 20).toFixed(0)} MiB, ${rows} rows`);

    const figures = (secs: number) => ({ seconds: secs, mbps: bytes / 2 ** 20 / secs, rowsps: rows / secs });
    const createTargetTables = async (targetSql: typeof sourceSql) => {
      await targetSql.unsafe(pgbenchDdl(true));
      await targetSql.unsafe(wideDdl());
    };

    const limit = await runLimit(ctx, async (cleanup) => {
      // Both wire formats, each into a fresh database of one target cluster;
      // the faster is the limit (binary wins on numbers, text can win on text).
      const { target } = await startTarget(ctx, 'copy-limit', cleanup);
      const timings: Record<string, number> = {};
      const notes: string[] = [];
      for (const format of ['text', 'binary'] as const) {
        await target.createDatabase(`limit_${format}`);
        const targetSql = connect(target, `limit_${format}`, cleanup);
        await createTargetTables(targetSql);
        timings[format] = await copyPipe(source.url, targetSql, TABLES, sizes, ctx.options.copyParallelism, format);
        notes.push(`COPY (FORMAT ${format}) TO STDOUT | COPY FROM STDIN, ${ctx.options.copyParallelism} tables at a time, largest first: ${timings[format]!.toFixed(2)} s (${await verifyTables(sourceSql, targetSql, TABLES, format)})`);
      }
      return { values: figures(Math.min(timings.text!, timings.binary!)), notes };
    });

    const sides = await runSides(ctx, async (side, cleanup, round) => {
      const { target, targetSql } = await startTarget(ctx, `copy-${side}-${round}`, cleanup);
      await createTargetTables(targetSql);
      const replicator = createReplicator(side, setupFor(ctx, source, sourceSql, target, targetSql, TABLES), ctx.options, cleanup);
      const started = performance.now();
      await replicator.start();
      // A guard against a stuck copy, not a budget: ~1 minute per scale unit (20 MB).
      await replicator.waitCopyDone(Math.max(5, scale) * MINUTE);
      const secs = seconds(started, performance.now());
      // Stop before verifying: the source is static, and the next side must
      // not find this side's slot holding WAL.
      await replicator.stop();
      const check = await verifyTables(sourceSql, targetSql, TABLES, 'end of run');
      return { values: figures(secs), notes: [replicator.settings, check] };
    });

    return {
      sizes: { pgbenchScale: scale, tables: TABLES.length, rows, mib: Math.round(bytes / 2 ** 20), wideRows: WIDE_ROWS_PER_SCALE * scale, parallelism: ctx.options.copyParallelism },
      metrics: METRICS,
      values: { ...sides.values, ...(limit.values ? { limit: limit.values } : {}) },
      notes: [
        `data: ${(bytes / 2 ** 20).toFixed(0)} MiB of heap + TOAST (pg_table_size, indexes not counted), ${rows} rows in ${TABLES.length} tables`,
        'time runs from CREATE SUBSCRIPTION / pgtide process start until all tables are ready (built-in: srsubstate = r; pgtide: table_state = ready)',
        'limit = COPY TO STDOUT piped through Node into COPY FROM STDIN over the same tables and target DDL, same parallelism; the faster of text and binary format',
        ...limit.notes, ...sides.notes,
      ],
      failures: [...limit.failures, ...sides.failures],
    };
  } finally {
    await shared.runAll(ctx.log);
  }
}

export const initialCopy: Scenario = { name: 'initial-copy', title: 'Initial copy (pgbench tables + TOASTed wide table)', run };
