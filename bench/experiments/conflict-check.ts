/**
 * What does conflict detection under the default policy (error) cost on the
 * happy path? A keyed UPDATE/DELETE run then also returns the ordinals it
 * matched and counts them (conflict-statements.ts, updateOrStop/deleteOrStop).
 * This runs those statements against the plain ones (updateByKeyStatement,
 * deleteByKeyStatement), interleaved, on the target alone, with the apply
 * session's settings: runs of `keys` keys, and one-key runs (oltp-like, each
 * its own statement, `singles` of them per round in one transaction).
 * Deleted rows are put back between rounds, untimed.
 *
 *   node dist/bench/experiments/conflict-check.js [keys] [rounds] [singles]
 *
 * PLAN_CACHE_MODE=force_generic_plan (or another plan_cache_mode) sets that for the session.
 */
import { performance } from 'node:perf_hooks';
import { Cluster, defaultMajor } from '../../src/harness/cluster.js';
import { RelationCache } from '../../src/changes/relation-cache.js';
import { deleteByKeyStatement, updateByKeyStatement } from '../../src/sinks/postgres/statements.js';
import { deleteOrStop, updateOrStop } from '../../src/sinks/postgres/conflict-statements.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import type { Tuple } from '../../src/protocol/messages.js';
import { MIGRATIONS } from '../../src/state/state-schema.js';

const keys = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 10);
const singles = Number(process.argv[4] ?? 2000);
const ROWS = 400_000;

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

const rowOf = (id: string, n: number): { key: string[]; newTuple: Tuple } => ({ key: [id], newTuple: [{ kind: 'text', value: id }, { kind: 'text', value: String(n) }, { kind: 'unchanged' }] });
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const target = await Cluster.start({ major: defaultMajor(), name: 'conflict-check' });
  const sql = target.sql('postgres', { max: 1 });
  try {
    await sql.unsafe(`CREATE SCHEMA pgtide; CREATE TABLE pgtide.schema_version (version int NOT NULL)`);
    for (const step of MIGRATIONS) await sql.unsafe(step);
    await sql.unsafe(`SET enable_hashjoin = off; SET enable_mergejoin = off; SET session_replication_role = replica; ${process.env.PLAN_CACHE_MODE ? `SET plan_cache_mode = ${process.env.PLAN_CACHE_MODE}` : ''}`);
    await sql.unsafe(`CREATE TABLE b (id bigint PRIMARY KEY, n int, t text); INSERT INTO b SELECT g, 0, md5(g::text) FROM generate_series(1, ${ROWS}) g`);
    await sql.unsafe(`VACUUM ANALYZE b`);
    const times = { updatePlain: [] as number[], updateChecked: [] as number[], deletePlain: [] as number[], deleteChecked: [] as number[], singlePlain: [] as number[], singleChecked: [] as number[] };
    for (let round = 0; round < rounds; round++) {
      const ids = Array.from({ length: keys }, (_, j) => String(1 + ((round * keys + j * 37) % ROWS)));
      const rows = ids.map((id) => rowOf(id, round));
      const checkedFirst = round % 2 === 0;
      for (const checked of checkedFirst ? [true, false] : [false, true]) {
        const update = checked ? updateOrStop(table, [1], rows)!.statement : updateByKeyStatement(table, [1], rows);
        let started = performance.now();
        await sql.begin(async (tx) => { await tx.unsafe(update.text, update.params as string[], { prepare: true }); });
        times[checked ? 'updateChecked' : 'updatePlain'].push(performance.now() - started);

        const keyRows = ids.map((id) => [id]);
        const del = checked ? deleteOrStop(table, keyRows)!.statement : deleteByKeyStatement(table, keyRows);
        started = performance.now();
        await sql.begin(async (tx) => { await tx.unsafe(del.text, del.params as string[], { prepare: true }); });
        times[checked ? 'deleteChecked' : 'deletePlain'].push(performance.now() - started);
        await sql.unsafe(`INSERT INTO b SELECT id, 0, md5(id::text) FROM unnest($1::text::bigint[]) AS id`, [`{${ids.join(',')}}`]);

        started = performance.now();
        await sql.begin(async (tx) => {
          const sent = [];
          for (let i = 0; i < singles; i++) {
            const one = [rowOf(String(1 + ((round * singles + i * 101) % ROWS)), round)];
            const s = checked ? updateOrStop(table, [1], one)!.statement : updateByKeyStatement(table, [1], one);
            sent.push(tx.unsafe(s.text, s.params as string[], { prepare: true }).execute());
          }
          await Promise.all(sent);
        });
        times[checked ? 'singleChecked' : 'singlePlain'].push(performance.now() - started);
      }
    }
    const line = (what: string, plain: number[], checked: number[]) => `${what}: plain ${median(plain).toFixed(1)} ms, checked ${median(checked).toFixed(1)} ms (${((median(checked) / median(plain) - 1) * 100).toFixed(1)} %)`;
    console.log(`PostgreSQL ${target.major}, ${ROWS} rows, median of ${rounds} interleaved rounds`);
    console.log(line(`UPDATE run of ${keys} keys`, times.updatePlain, times.updateChecked));
    console.log(line(`DELETE run of ${keys} keys`, times.deletePlain, times.deleteChecked));
    console.log(line(`${singles} one-key UPDATEs, pipelined in one transaction`, times.singlePlain, times.singleChecked));
  } finally {
    await sql.end({ timeout: 2 });
    await target.destroy();
  }
}

main().catch((error: unknown) => { console.error(error); process.exitCode = 1; });
