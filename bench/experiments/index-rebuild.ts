/**
 * Does `copy.rebuildIndexes` pay off? The initial copy of one table with a
 * primary key and three secondary indexes, through pgtide's own copyTables,
 * with the indexes kept in place and with them dropped and rebuilt, runs
 * interleaved. Not part of `npm run bench all`: the pgbench tables of the
 * initial-copy scenario have no secondary indexes.
 *
 *   node dist/bench/experiments/index-rebuild.js [rows] [rounds]
 */
import { performance } from 'node:perf_hooks';
import { Cluster, defaultMajor } from '../../src/harness/cluster.js';
import { copyTables } from '../../src/copy/table-copy.js';

const rows = Number(process.argv[2] ?? 1_500_000);
const rounds = Number(process.argv[3] ?? 2);
const DDL = `CREATE TABLE items (id int PRIMARY KEY, k int, email text, at timestamptz, pad text)`;
const SECONDARY = `CREATE INDEX ON items (k); CREATE INDEX ON items (email); CREATE INDEX ON items (at)`;

async function main(): Promise<void> {
  const [source, target] = await Promise.all([
    Cluster.start({ major: defaultMajor(), name: 'idx-src' }),
    Cluster.start({ major: defaultMajor(), name: 'idx-dst' }),
  ]);
  const src = source.sql('postgres', { max: 1 });
  const dst = target.sql('postgres', { max: 1 });
  try {
    await src.unsafe(DDL);
    await src.unsafe(`INSERT INTO items SELECT g, (g::bigint * 7919 % 100000)::int, md5(g::text), now() - g * interval '1 s', repeat('x', 60) FROM generate_series(1, ${rows}) g`);
    await dst.unsafe(`${DDL}; ${SECONDARY}`);
    const snapshot = await source.exportSnapshot();
    const times: Record<'kept' | 'rebuilt', number[]> = { kept: [], rebuilt: [] };
    for (let round = 0; round < rounds; round++) {
      for (const mode of ['kept', 'rebuilt'] as const) {
        const started = performance.now();
        await copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [{ schema: 'public', name: 'items' }], parallelism: 1, rebuildIndexes: mode === 'rebuilt' });
        times[mode].push((performance.now() - started) / 1000);
        console.log(`${mode.padEnd(8)} round ${round + 1}: ${times[mode].at(-1)!.toFixed(2)} s`);
      }
    }
    await snapshot.release();
    const best = (xs: number[]) => Math.min(...xs);
    console.log(`${rows} rows, PK + 3 secondary indexes, PostgreSQL ${source.major}: indexes kept ${best(times.kept).toFixed(2)} s, dropped and rebuilt ${best(times.rebuilt).toFixed(2)} s (best of ${rounds}); speedup ${(best(times.kept) / best(times.rebuilt)).toFixed(2)}×`);
  } finally {
    await Promise.allSettled([src.end(), dst.end()]);
    await Promise.allSettled([source.destroy(), target.destroy()]);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
