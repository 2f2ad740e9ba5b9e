/**
 * What does writing the whole new row cost (issue 11, case 6)? A keyed UPDATE
 * run now also assigns the unchanged key (`SET id = v.c0::bigint, …`), as the
 * built-in worker writes the whole row. This runs the statement pgtide sends
 * (updateByKeyStatement) against the same statement without the key in SET,
 * interleaved, on the target alone: runs of `keys` keys in a 1 M-row table,
 * with the apply session's settings. The end-to-end benchmarks are too noisy
 * on a shared machine to show a difference this small.
 *
 *   node dist/bench/experiments/update-whole-row.js [keys] [rounds]
 */
import { performance } from 'node:perf_hooks';
import { Cluster, defaultMajor } from '../../src/harness/cluster.js';
import { RelationCache } from '../../src/changes/relation-cache.js';
import { updateByKeyStatement } from '../../src/sinks/postgres/statements.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import { textArrayLiteral } from '../../src/core/sql.js';

const keys = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 16);
const ROWS = 1_000_000;

const relation = new RelationCache().update({
  tag: 'relation', xid: undefined, relationOid: 1, schema: 'public', name: 'b', replicaIdentity: 'default',
  columns: [{ name: 'id', isKey: true, typeOid: 20, typeMod: -1 }, { name: 'n', isKey: false, typeOid: 23, typeMod: -1 }, { name: 't', isKey: false, typeOid: 25, typeMod: -1 }],
});
const table: TargetTable = {
  relation,
  columns: [
    { name: 'id', sqlType: 'bigint', compareAsText: false, identityAlways: false },
    { name: 'n', sqlType: 'integer', compareAsText: false, identityAlways: false },
    { name: 't', sqlType: 'text', compareAsText: false, identityAlways: false },
  ],
  facts: { replicaTriggers: false, keyUnique: true, keyIndexExact: true },
};

async function main(): Promise<void> {
  const target = await Cluster.start({ major: defaultMajor(), name: 'whole-row' });
  const sql = target.sql('postgres', { max: 1 });
  try {
    await sql.unsafe(`SET enable_hashjoin = off; SET enable_mergejoin = off; SET session_replication_role = replica`);
    await sql.unsafe(`CREATE TABLE b (id bigint PRIMARY KEY, n int, t text); INSERT INTO b SELECT g, 0, md5(g::text) FROM generate_series(1, ${ROWS}) g`);
    await sql.unsafe(`VACUUM ANALYZE b`);
    const sample = updateByKeyStatement(table, [1], [{ key: ['1'], newTuple: [{ kind: 'text', value: '1' }, { kind: 'text', value: '0' }, { kind: 'unchanged' }] }]);
    const withoutKey = sample.text.replace(/SET "id" = v\.c0::bigint, /, 'SET ');
    if (withoutKey === sample.text) throw new Error(`unexpected statement shape: ${sample.text}`);
    const shapes = { wholeRow: sample.text, withoutKey } as const;
    const times: Record<keyof typeof shapes, number[]> = { wholeRow: [], withoutKey: [] };
    for (let round = 0; round < rounds; round++) {
      const ids = Array.from({ length: keys }, (_, j) => String(1 + ((round * keys + j * 37) % ROWS)));
      const params = [textArrayLiteral(ids), textArrayLiteral(ids.map(() => String(round)))];
      const order = round % 2 === 0 ? (['wholeRow', 'withoutKey'] as const) : (['withoutKey', 'wholeRow'] as const);
      for (const shape of order) {
        const started = performance.now();
        await sql.begin(async (tx) => { await tx.unsafe(shapes[shape], params, { prepare: true }); });
        times[shape].push(performance.now() - started);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(`${keys}-key UPDATE runs on ${ROWS} rows, PostgreSQL ${target.major}, median of ${rounds}: whole row (key in SET) ${median(times.wholeRow).toFixed(1)} ms, without the key ${median(times.withoutKey).toFixed(1)} ms`);
  } finally {
    await sql.end().catch(() => {});
    await target.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
