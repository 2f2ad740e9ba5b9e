/**
 * What DDL capture adds to a schema change on the source: ALTER TABLE ADD
 * COLUMN followed by DROP COLUMN on a 100-column table in a publication,
 * timed without the capture triggers and with them (each statement then also
 * snapshots the table, signs the snapshot in PL/pgSQL and emits a logical
 * message). Issue 13's target: under 5 ms per ALTER.
 *
 *   node dist/bench/experiments/ddl-trigger.js [rounds]
 */
import { performance } from 'node:perf_hooks';
import { Cluster, defaultMajor } from '../../src/harness/cluster.js';
import { installDdlCapture, uninstallDdlCapture } from '../../src/source/ddl-capture.js';

const rounds = Number(process.argv[2] ?? 200);
const COLUMNS = Array.from({ length: 99 }, (_, i) => `c${i} ${i % 3 === 0 ? 'int' : i % 3 === 1 ? 'text' : 'numeric(12,2)'}${i % 10 === 0 ? ' NOT NULL DEFAULT 0' : ''}`).join(', ');

async function main(): Promise<void> {
  const source = await Cluster.start({ major: defaultMajor(), name: 'ddl-bench' });
  const sql = source.sql('postgres', { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`CREATE TABLE wide (id int PRIMARY KEY, ${COLUMNS}); CREATE INDEX ON wide (c1); CREATE PUBLICATION bench_pub FOR TABLE wide`);
    const time = async (): Promise<number[]> => {
      const samples: number[] = [];
      for (let i = 0; i < rounds; i++) {
        for (const statement of [`ALTER TABLE wide ADD COLUMN extra int`, `ALTER TABLE wide DROP COLUMN extra`]) {
          const started = performance.now();
          await sql.unsafe(statement);
          samples.push(performance.now() - started);
        }
      }
      return samples.sort((a, b) => a - b);
    };
    const median = (xs: number[]) => xs[Math.floor(xs.length / 2)]!;
    const p95 = (xs: number[]) => xs[Math.floor(xs.length * 0.95)]!;
    await time(); // warm-up
    const plain = await time();
    await installDdlCapture(sql, { publications: ['bench_pub'], newTableSchemas: [] });
    await time();
    const captured = await time();
    await uninstallDdlCapture(sql);
    console.log(`PostgreSQL ${source.major}, 100-column table, ${rounds * 2} ALTERs each: without capture median ${median(plain).toFixed(2)} ms (p95 ${p95(plain).toFixed(2)}), with capture median ${median(captured).toFixed(2)} ms (p95 ${p95(captured).toFixed(2)}); added ${(median(captured) - median(plain)).toFixed(2)} ms per ALTER`);
  } finally {
    await sql.end({ timeout: 2 });
    await source.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
