/**
 * two-way: a pgtide pair A ⇄ B (both edges `origins: none`), TPC-B-like
 * transactions on both nodes at once, each node on its own half of the
 * branches, tellers and accounts (pgtide does not resolve conflicts: the keys
 * must be disjoint, docs/topologies.md).
 *
 * A is loaded with pgbench's tables; edge ab copies them to B, then edge ba
 * starts with the copy off. The live run samples, every 200 ms, each node's
 * WAL position and the other node's applied position for it, which gives the
 * lag of each direction in bytes and seconds (the oltp scenario's
 * definitions). At the end both nodes must hold the same rows, and
 * pgbench_history (one row per transaction, no key) exactly one row per
 * transaction committed on either node: an echoed transaction would add one.
 *
 * pgtide only: built-in two-way replication (`origin = none`) exists on 16+
 * only and is not measured here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { stringify } from 'yaml';
import type { Cluster } from '../../src/harness/cluster.js';
import { parseConfig, type ConfigInput } from '../../src/control/config.js';
import { ZERO_LSN, type Lsn } from '../../src/core/lsn.js';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import { Cleanup, errorMessage } from '../lib/cleanup.js';
import { connect, currentLsn, dotted, inSourceTransaction, parseNullableLsn, qualified, rowCount, sleep, startBenchCluster, waitUntil, MARKER_TABLE, type Table } from '../lib/db.js';
import { HISTORY, loadPgbench, pgbenchDdl, PGBENCH_TABLES, tpcbTransaction } from '../lib/pgbench.js';
import { MINUTE } from '../lib/pair.js';
import { verifyTables } from '../lib/verify.js';
import { lagBytes, lagSeconds, percentile, type LagSample } from '../lib/stats.js';
import type { Failure, MetricSpec, ScenarioOutcome } from '../lib/report.js';

const TABLES: readonly Table[] = [...PGBENCH_TABLES, MARKER_TABLE];

const METRICS: readonly MetricSpec[] = [
  { key: 'a.workload_tps', label: 'A: workload rate', unit: 'tx/s', better: 'info' },
  { key: 'b.workload_tps', label: 'B: workload rate', unit: 'tx/s', better: 'info' },
  { key: 'ab.lag_s_p50', label: 'A → B: lag p50', unit: 's', better: 'lower' },
  { key: 'ab.lag_s_p99', label: 'A → B: lag p99', unit: 's', better: 'lower' },
  { key: 'ab.lag_s_max', label: 'A → B: lag max', unit: 's', better: 'lower' },
  { key: 'ab.lag_bytes_p99', label: 'A → B: lag p99', unit: 'bytes', better: 'lower' },
  { key: 'ba.lag_s_p50', label: 'B → A: lag p50', unit: 's', better: 'lower' },
  { key: 'ba.lag_s_p99', label: 'B → A: lag p99', unit: 's', better: 'lower' },
  { key: 'ba.lag_s_max', label: 'B → A: lag max', unit: 's', better: 'lower' },
  { key: 'ba.lag_bytes_p99', label: 'B → A: lag p99', unit: 'bytes', better: 'lower' },
  { key: 'final_catchup', label: 'both caught up after the workload', unit: 's', better: 'lower' },
];

function cliPath(): string {
  return process.env.PGTIDE_BENCH_CLI ?? fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
}

/** One pgtide edge as a CLI child; its last output is kept for the failure message. */
class Edge {
  readonly name: string;
  readonly #dir: string;
  readonly #child: ChildProcess;
  readonly #tail: string[] = [];
  #exit: string | undefined;
  #expectExit = false;

  constructor(name: string, from: Cluster, to: Cluster, copy: boolean, cleanup: Cleanup) {
    this.name = name;
    const config: ConfigInput = {
      name,
      source: { url: from.url },
      target: { url: to.url },
      tables: TABLES.map(dotted),
      origins: 'none',
      copy: { enabled: copy },
      sequences: { enabled: false },
      apply: { batchMaxTransactions: 1000, batchMaxChanges: 20000, batchMaxAgeMs: 10 },
      memoryCap: '64MB',
      // An idle source (before and after the workload) still moves the applied position within a second.
      heartbeatIntervalMs: 1000,
    };
    parseConfig(config, `bench ${name} config`);
    this.#dir = mkdtempSync(path.join(tmpdir(), `pgtide-bench-${name}-`));
    const file = path.join(this.#dir, 'pgtide.yaml');
    writeFileSync(file, stringify(config));
    this.#child = spawn(process.execPath, [cliPath(), 'start', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#child.stderr?.on('data', (chunk: Buffer) => {
      this.#tail.push(...chunk.toString().split('\n').filter(Boolean));
      if (this.#tail.length > 100) this.#tail.splice(0, 50);
    });
    this.#child.once('exit', (code, signal) => { this.#exit = `code ${code}, signal ${signal}`; });
    cleanup.add(`stop pgtide ${name}`, () => this.stop());
  }

  async checkHealth(): Promise<void> {
    if (this.#exit !== undefined && !this.#expectExit) throw new Error(`pgtide ${this.name} exited (${this.#exit}); last output:\n${this.#tail.slice(-20).join('\n')}`);
  }

  async stop(): Promise<void> {
    this.#expectExit = true;
    if (this.#exit === undefined && this.#child.pid !== undefined) {
      const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
      process.kill(this.#child.pid, 'SIGTERM');
      const timer = setTimeout(() => { try { process.kill(this.#child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 30_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

async function appliedLsn(target: postgres.Sql, subscription: string): Promise<Lsn> {
  try {
    const rows = await target<{ lsn: string }[]>`SELECT end_lsn::text AS lsn FROM pgtide.apply_progress WHERE subscription = ${subscription}`;
    return rows.length === 0 ? ZERO_LSN : parseNullableLsn(rows[0]!.lsn);
  } catch (error) {
    if ((error as { code?: string }).code === '42P01') return ZERO_LSN;
    throw error;
  }
}

interface Half { readonly bids: readonly [number, number]; readonly tids: readonly [number, number]; readonly aids: readonly [number, number] }

/** Node 0 takes the lower half of every keyed pgbench table, node 1 the upper. */
function half(scale: number, node: 0 | 1): Half {
  const split = (n: number): readonly [number, number] => (node === 0 ? [1, Math.floor(n / 2)] : [Math.floor(n / 2) + 1, n]);
  return { bids: split(scale), tids: split(10 * scale), aids: split(100_000 * scale) };
}

/** pgbench's TPC-B-like transaction, restricted to one node's keys (see runTpcb in lib/pgbench.ts). */
async function runTpcbHalf(url: string, keys: Half, options: { readonly clients: number; readonly seconds: number; readonly seed: number }): Promise<{ readonly transactions: number; readonly seconds: number }> {
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  let state = options.seed >>> 0 || 1;
  const random = () => { state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0; return state / 0x1_0000_0000; };
  const pick = ([low, high]: readonly [number, number]) => low + Math.floor(random() * (high - low + 1));
  const client = async (): Promise<number> => {
    const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'pgtide-bench-tpcb' } });
    let done = 0;
    try {
      while (performance.now() < deadline) {
        const aid = pick(keys.aids);
        const bid = pick(keys.bids);
        const tid = pick(keys.tids);
        const delta = Math.floor(random() * 10001) - 5000;
        await sql.unsafe(tpcbTransaction(aid, bid, tid, delta));
        done++;
      }
    } finally {
      await sql.end({ timeout: 5 });
    }
    return done;
  };
  const counts = await Promise.all(Array.from({ length: options.clients }, () => client()));
  return { transactions: counts.reduce((x, y) => x + y, 0), seconds: (performance.now() - started) / 1000 };
}

async function run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const duration = ctx.options.oltpSeconds;
  // Each node needs a branch of its own: at scale 1 (--quick) both would update the one branch.
  const scale = Math.max(2, ctx.options.oltpScale);
  const clientsPerNode = Math.max(1, ctx.options.oltpClients / 2);
  const failures: Failure[] = [];
  const notes: string[] = [];
  const values: Record<string, number> = {};
  const cleanup = new Cleanup();
  try {
    // Both nodes are written by applications: both get the source settings (synchronous_commit on).
    const [nodeA, nodeB] = await Promise.all([startBenchCluster(ctx.major, 'twoway-a', 'source', cleanup), startBenchCluster(ctx.major, 'twoway-b', 'source', cleanup)]);
    const [A, B] = [connect(nodeA, 'postgres', cleanup), connect(nodeB, 'postgres', cleanup)];
    await loadPgbench(A, scale);
    await A.unsafe(`CREATE TABLE ${qualified(MARKER_TABLE)} (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO ${qualified(MARKER_TABLE)} VALUES (1, 0), (2, 0)`);
    await B.unsafe(pgbenchDdl(true));
    await B.unsafe(`CREATE TABLE ${qualified(MARKER_TABLE)} (id int PRIMARY KEY, n bigint NOT NULL)`);
    // Each node's barrier updates its own marker row: no two nodes write one key.
    const barrier = (sql: postgres.Sql, id: 1 | 2) => inSourceTransaction(sql, (tx) => tx.unsafe(`UPDATE ${qualified(MARKER_TABLE)} SET n = n + 1 WHERE id = ${id}`));

    const caughtUp = async (edge: Edge, target: postgres.Sql, lsn: Lsn, what: string, timeoutMs: number) =>
      waitUntil(async () => (await appliedLsn(target, edge.name)) >= lsn, { what, timeoutMs, pollMs: 20, health: () => edge.checkHealth() });
    // Every table ready: the copy is done (ab), or the slot exists and the tables were marked ready at it (ba).
    const tablesReady = async (edge: Edge, target: postgres.Sql, what: string, timeoutMs: number) =>
      waitUntil(async () => {
        const rows = await target<{ ready: boolean }[]>`SELECT count(*) = ${TABLES.length} AND bool_and(state = 'ready') AS ready FROM pgtide.table_state WHERE subscription = ${edge.name}`
          .catch((error: unknown) => { if ((error as { code?: string }).code === '42P01') return [{ ready: false }]; throw error; });
        return rows[0]?.ready === true;
      }, { what, timeoutMs, pollMs: 100, health: () => edge.checkHealth() });
    ctx.log('pgtide: edge ab copies A into B');
    const ab = new Edge('ab', nodeA, nodeB, true, cleanup);
    await tablesReady(ab, B, 'ab to copy A into B', Math.max(5, scale) * MINUTE);
    await caughtUp(ab, B, await barrier(A, 1), 'ab to catch up after the copy', 5 * MINUTE);
    ctx.log('pgtide: edge ba starts (copy off)');
    const ba = new Edge('ba', nodeB, nodeA, false, cleanup);
    await tablesReady(ba, A, 'ba to create its slot', 5 * MINUTE);
    await caughtUp(ba, A, await barrier(B, 2), 'ba to catch up', 5 * MINUTE);

    ctx.log(`live run, ${duration} s, ${clientsPerNode} clients on each node`);
    const historyBefore = await rowCount(A, HISTORY);
    let sampling = true;
    const sample = async (): Promise<{ readonly ab: LagSample[]; readonly ba: LagSample[] }> => {
      const out = { ab: [] as LagSample[], ba: [] as LagSample[] };
      while (sampling) {
        const next = performance.now() + 200;
        const [lsnA, lsnB, appliedOnB, appliedOnA] = await Promise.all([currentLsn(A), currentLsn(B), appliedLsn(B, 'ab'), appliedLsn(A, 'ba')]);
        const atMs = performance.now();
        out.ab.push({ atMs, sourceLsn: lsnA, appliedLsn: appliedOnB });
        out.ba.push({ atMs, sourceLsn: lsnB, appliedLsn: appliedOnA });
        await sleep(Math.max(0, next - performance.now()));
      }
      return out;
    };
    const sampled = sample();
    sampled.catch(() => {});
    const [workA, workB] = await Promise.all([
      runTpcbHalf(nodeA.url, half(scale, 0), { clients: clientsPerNode, seconds: duration, seed: 1 }),
      runTpcbHalf(nodeB.url, half(scale, 1), { clients: clientsPerNode, seconds: duration, seed: 2 }),
    ]);
    const end = performance.now();
    sampling = false;
    const samples = await sampled;
    const [doneAB, doneBA] = await Promise.all([
      caughtUp(ab, B, await barrier(A, 1), 'ab to catch up after the live run', 10 * MINUTE),
      caughtUp(ba, A, await barrier(B, 2), 'ba to catch up after the live run', 10 * MINUTE),
    ]);
    for (const [edge, list] of [['ab', samples.ab], ['ba', samples.ba]] as const) {
      const secs = lagSeconds(list);
      const bytes = lagBytes(list);
      Object.assign(values, {
        [`${edge}.lag_s_p50`]: percentile(secs, 50), [`${edge}.lag_s_p99`]: percentile(secs, 99), [`${edge}.lag_s_max`]: Math.max(...secs),
        [`${edge}.lag_bytes_p99`]: percentile(bytes, 99),
      });
    }
    Object.assign(values, {
      'a.workload_tps': workA.transactions / workA.seconds,
      'b.workload_tps': workB.transactions / workB.seconds,
      final_catchup: (Math.max(doneAB, doneBA) - end) / 1000,
    });
    notes.push(`A: ${workA.transactions} transactions, B: ${workB.transactions} transactions in ${duration} s; ${samples.ab.length} lag samples per direction`);
    notes.push(await verifyTables(A, B, TABLES, 'A and B after the live run'));
    const history = (await rowCount(A, HISTORY)) - historyBefore;
    if (history !== workA.transactions + workB.transactions) {
      failures.push({ side: 'pgtide', kind: 'mismatch', message: `pgbench_history gained ${history} rows for ${workA.transactions + workB.transactions} transactions: a transaction was lost or came back to its node` });
    } else {
      notes.push(`pgbench_history: one row per transaction of either node (${history}): no echo, no loss`);
    }
  } catch (error) {
    failures.push({ side: 'pgtide', kind: 'error', message: error instanceof Error ? (error.stack ?? error.message) : errorMessage(error) });
  } finally {
    await cleanup.runAll(ctx.log);
  }
  return {
    sizes: { pgbenchScale: scale, clientsPerNode, durationSeconds: duration },
    metrics: METRICS,
    values: { pgtide: values },
    notes: [
      `TPC-B-like transactions on both nodes of a pgtide two-way pair (origins: none), ${clientsPerNode} client(s) per node, each node on its own half of branches, tellers and accounts; scale ${scale}, ${duration} s`,
      'lag per direction = how long ago the source node was at the position the other node has applied (200 ms samples, as in oltp); built-in two-way replication is not measured',
      ...notes,
    ],
    failures,
  };
}

export const twoWay: Scenario = { name: 'two-way', title: 'two-way: TPC-B-like transactions on both nodes of a pair, lag per direction', run };
