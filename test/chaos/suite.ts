/**
 * The fault-injection suite (issue 10): two embedded clusters, a TCP proxy in
 * front of each, pgtide as a CLI child process connected through the
 * proxies, a mixed workload on the source, and faults drawn from a seeded
 * PRNG. After each fault the suite waits for recovery (a marker row committed
 * on the source arrives on the target) within a time limit; at the end it
 * compares every table and sequence. A failing run is replayed from its seed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type postgres from 'postgres';
import { Cluster, defaultMajor, type PgMajor } from '../../src/harness/cluster.js';
import { TcpProxy } from '../../src/harness/tcp-proxy.js';
import {
  TestScope, pinnedSql, startCli, writeConfigFile, prng, waitFor, MARKER_TABLE,
  type CliProcess,
} from '../support/replication.js';
import { CHAOS_TABLES, setUpSchema, pickStep, runStep, RolledBack, type StepOptions } from './workload.js';
import { compareAll, type Comparison } from './compare.js';

export const FAULT_KINDS = [
  'kill9', 'sigterm', 'kill-walsender', 'kill-apply', 'restart-source', 'restart-target',
  'reset-source', 'reset-target', 'fin-source', 'fin-target', 'blackhole-source', 'blackhole-target',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number] | 'kill9-copy' | 'sigterm-copy';

export interface ChaosOptions {
  readonly faults: number;
  readonly seed: number;
  readonly major?: PgMajor;
  /** Include the unique-swap step (issue 10 case 4 makes pgtide exit on it until fixed). */
  readonly swaps?: boolean;
  /** Time limit for one recovery, ms. */
  readonly recoveryMs?: number;
  readonly pgbenchScale?: number;
  readonly log?: (line: string) => void;
}

export interface ChaosSummary {
  readonly ok: boolean;
  readonly seed: number;
  readonly major: PgMajor;
  readonly faults: Readonly<Record<string, number>>;
  readonly recoveries: number;
  readonly recoveryMaxMs: number;
  readonly recoveryMeanMs: number;
  readonly transactions: number;
  readonly comparison: Comparison | undefined;
  readonly failure: string | undefined;
  readonly seconds: number;
}

const CONFIG_NAME = 'chaos';

export async function runChaos(options: ChaosOptions): Promise<ChaosSummary> {
  const started = Date.now();
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const major = options.major ?? defaultMajor();
  const rnd = prng(options.seed);
  const recoveryMs = options.recoveryMs ?? 150_000;
  const scope = new TestScope();
  const faults: Record<string, number> = {};
  const recoveryTimes: number[] = [];
  let committed = (): number => 0;
  let comparison: Comparison | undefined;
  let failure: string | undefined;
  try {
    const [source, target] = await Promise.all([
      Cluster.start({ major, name: 'chaos-src' }),
      Cluster.start({ major, name: 'chaos-dst' }),
    ]);
    scope.defer('destroy source', () => source.destroy());
    scope.defer('destroy target', () => target.destroy());
    const [sourceProxy, targetProxy] = await Promise.all([TcpProxy.start(source.port), TcpProxy.start(target.port)]);
    scope.defer('close proxies', async () => { await sourceProxy.close(); await targetProxy.close(); });
    const src = pinnedSql(scope, source);
    const dst = pinnedSql(scope, target);
    const scale = options.pgbenchScale ?? 1;
    await Promise.all([src.unsafe(`CREATE TABLE ${MARKER_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`), dst.unsafe(`CREATE TABLE ${MARKER_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`)]);
    await setUpSchema(src, dst, scale);
    log(`chaos: PostgreSQL ${major}, seed ${options.seed}, ${options.faults} faults, swaps ${options.swaps === false ? 'off' : 'on'}`);

    const via = (cluster: Cluster, proxy: TcpProxy) => `postgres://${cluster.user}:${cluster.password}@127.0.0.1:${proxy.port}/postgres`;
    const configFile = writeConfigFile(scope, {
      name: CONFIG_NAME,
      source: { url: via(source, sourceProxy) },
      target: { url: via(target, targetProxy) },
      tables: [...CHAOS_TABLES.map((t) => t.name), MARKER_TABLE],
      apply: { batchMaxAgeMs: 10, batchMaxChanges: 2000 },
      statusIntervalMs: 1000,
      receiveTimeoutMs: 10_000,
      stallTimeoutMs: 10_000,
      sequences: { enabled: true, intervalMs: 1000 },
    });
    const steps: StepOptions = { pgbenchScale: scale, swaps: options.swaps !== false, bigRows: 2000 };
    const workload = new ChaosWorkload(src, steps, options.seed);
    committed = () => workload.committed;
    scope.defer('stop workload', () => workload.stop());

    let cli: CliProcess | undefined;
    const killOnExit = () => { try { cli?.kill('SIGKILL'); } catch { /* gone */ } };
    process.on('exit', killOnExit);
    scope.defer('exit hook', () => process.off('exit', killOnExit));
    const startPgtide = (): CliProcess => {
      cli = startCli(scope, ['start', '--config', configFile]);
      return cli;
    };
    const requireRunning = (): void => {
      if (cli?.exitCode !== undefined) throw new ChaosFailure(`pgtide exited by itself (${String(cli.exitCode)}); stderr tail:\n${cli.stderrTail(30)}`);
    };
    const recover = async (what: string): Promise<void> => {
      const from = Date.now();
      await waitForMarker(src, dst, recoveryMs, requireRunning).catch((error: unknown) => {
        throw new ChaosFailure(`no recovery within ${recoveryMs / 1000} s after ${what}: ${error instanceof Error ? error.message : String(error)}\npgtide stderr tail:\n${cli?.stderrTail(30) ?? ''}`);
      });
      recoveryTimes.push(Date.now() - from);
    };
    const count = (kind: FaultKind) => { faults[kind] = (faults[kind] ?? 0) + 1; };

    // Initial copy, with up to two faults while it runs (drawn like the others).
    workload.start();
    let copyFaults = Math.min(options.faults, Math.floor(rnd() * 3));
    for (;;) {
      const running = startPgtide();
      if (copyFaults === 0) break;
      await running.waitForStderr(/initial copy started/, 60_000);
      await sleep(Math.floor(rnd() * 600));
      if (running.exitCode !== undefined) throw new ChaosFailure(`pgtide exited during the initial copy (${String(running.exitCode)}):\n${running.stderrTail(30)}`);
      const kind: FaultKind = rnd() < 0.5 ? 'kill9-copy' : 'sigterm-copy';
      log(`fault ${Object.values(faults).reduce((a, b) => a + b, 0) + 1}: ${kind}`);
      await stopPgtide(running, kind === 'kill9-copy' ? 'SIGKILL' : 'SIGTERM');
      count(kind);
      copyFaults--;
    }
    await recover('the initial copy');
    let done = Object.values(faults).reduce((a, b) => a + b, 0);

    while (done < options.faults) {
      await sleep(500 + Math.floor(rnd() * 2500));
      requireRunning();
      const kind = FAULT_KINDS[Math.floor(rnd() * FAULT_KINDS.length)]!;
      log(`fault ${done + 1}: ${kind} (${workload.committed} transactions so far)`);
      switch (kind) {
        case 'kill9':
        case 'sigterm':
          await stopPgtide(cli!, kind === 'kill9' ? 'SIGKILL' : 'SIGTERM');
          startPgtide();
          break;
        case 'kill-walsender':
          await src.unsafe(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = 'pgtide'`);
          break;
        case 'kill-apply':
          await dst.unsafe(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgtide-apply'`);
          break;
        case 'restart-source':
          // The workload pauses: postgres.js 3.4.9 can throw an uncatchable TypeError from a client
          // whose socket closes under a pending write (porsager/postgres#1208).
          await workload.pause();
          await source.stopImmediate();
          await sleep(Math.floor(rnd() * 2000));
          await source.startServer();
          workload.start();
          break;
        case 'restart-target':
          await target.stopImmediate();
          await sleep(Math.floor(rnd() * 2000));
          await target.startServer();
          break;
        case 'reset-source': sourceProxy.resetAll(); break;
        case 'reset-target': targetProxy.resetAll(); break;
        case 'fin-source': sourceProxy.finAll(); break;
        case 'fin-target': targetProxy.finAll(); break;
        case 'blackhole-source':
        case 'blackhole-target': {
          const proxy = kind === 'blackhole-source' ? sourceProxy : targetProxy;
          proxy.blackholeAll();
          // The path heals after a while: stale connections then get RSTs, as from a peer that
          // forgot them. Until then only pgtide's own deadlines can notice.
          await sleep(12_000 + Math.floor(rnd() * 6000));
          proxy.resetAll();
          break;
        }
      }
      count(kind);
      done++;
      await recover(kind);
    }

    log(`faults done; stopping the workload (${workload.committed} transactions committed, ${workload.failed} failed or rolled back)`);
    await workload.stop();
    await recover('the end of the workload');
    requireRunning();
    comparison = await compareAll(src, dst, CHAOS_TABLES);
    if (!comparison.ok) failure = `differences found:\n${comparison.problems.join('\n')}`;
    await stopPgtide(cli!, 'SIGTERM');
  } catch (error) {
    failure = error instanceof ChaosFailure ? error.message : `${error instanceof Error ? error.stack ?? error.message : String(error)}`;
  } finally {
    await scope.cleanup();
  }
  const transactions = committed();
  const recoveries = recoveryTimes.length;
  return {
    ok: failure === undefined,
    seed: options.seed,
    major,
    faults,
    recoveries,
    recoveryMaxMs: recoveries ? Math.max(...recoveryTimes) : 0,
    recoveryMeanMs: recoveries ? Math.round(recoveryTimes.reduce((a, b) => a + b, 0) / recoveries) : 0,
    transactions,
    comparison,
    failure,
    seconds: (Date.now() - started) / 1000,
  };
}

export function formatSummary(summary: ChaosSummary): string {
  const c = summary.comparison;
  const lines = [
    `chaos summary: ${summary.ok ? 'PASS' : 'FAIL'} (PostgreSQL ${summary.major}, seed ${summary.seed}, ${summary.seconds.toFixed(0)} s)`,
    `  faults: ${Object.values(summary.faults).reduce((a, b) => a + b, 0)} (${Object.entries(summary.faults).sort().map(([k, n]) => `${k} ${n}`).join(', ') || 'none'})`,
    `  recoveries: ${summary.recoveries} (mean ${(summary.recoveryMeanMs / 1000).toFixed(1)} s, max ${(summary.recoveryMaxMs / 1000).toFixed(1)} s)`,
    `  source transactions committed: ${summary.transactions}`,
  ];
  if (c) {
    lines.push(`  tables compared: ${c.tables}, rows compared: ${c.rows}`);
    lines.push(`  losses: ${c.losses}, duplicates: ${c.duplicates}, sequences compared: ${c.sequences}, sequences behind: ${c.sequencesBehind}`);
  } else {
    lines.push('  tables not compared (the run failed before the end)');
  }
  if (summary.failure) lines.push(`  failure: ${summary.failure}`);
  return lines.join('\n');
}

class ChaosFailure extends Error {}

/** Stops pgtide with a signal and waits for the process to go. */
async function stopPgtide(cli: CliProcess, signal: NodeJS.Signals): Promise<void> {
  if (cli.exitCode !== undefined) return;
  cli.kill(signal);
  const timer = setTimeout(() => cli.kill('SIGKILL'), 60_000);
  const { code, signal: by } = await cli.exited;
  clearTimeout(timer);
  if (signal === 'SIGTERM' && by === 'SIGKILL') throw new ChaosFailure(`pgtide did not stop within 60 s of SIGTERM; stderr tail:\n${cli.stderrTail(30)}`);
  if (signal === 'SIGTERM' && code !== 0 && by === null) throw new ChaosFailure(`pgtide exited with ${code} on SIGTERM; stderr tail:\n${cli.stderrTail(30)}`);
}

/** A marker row committed on the source arrives on the target: everything before it did too. */
async function waitForMarker(src: postgres.Sql, dst: postgres.Sql, timeoutMs: number, failFast: () => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const check = () => { try { failFast(); return undefined; } catch (error) { return error; } };
  const marker = await waitFor('the marker insert on the source', async () => {
    const [row] = await src.unsafe<{ id: string }[]>(`INSERT INTO ${MARKER_TABLE} DEFAULT VALUES RETURNING id::text`);
    return row;
  }, { timeoutMs, intervalMs: 200, failFast: check });
  await waitFor(`marker ${marker.id} on the target`, async () => {
    const rows = await dst.unsafe(`SELECT 1 FROM ${MARKER_TABLE} WHERE id = $1::bigint`, [marker.id]);
    return rows.length ? true : undefined;
  }, { timeoutMs: Math.max(1000, deadline - Date.now()), intervalMs: 100, failFast: check });
}

/**
 * Sessions running the chaos steps on the source (directly, not through the
 * proxy). A failed transaction (a server going away, a deadlock) is counted
 * and the loop carries on: what committed on the source is what must arrive.
 */
class ChaosWorkload {
  committed = 0;
  failed = 0;
  readonly #sql: postgres.Sql;
  readonly #steps: StepOptions;
  readonly #seed: number;
  #stopped = true;
  #loops: Promise<void>[] = [];
  #round = 0;
  #next = 1;

  constructor(sql: postgres.Sql, steps: StepOptions, seed: number) {
    this.#sql = sql;
    this.#steps = steps;
    this.#seed = seed;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#round++;
    for (let w = 0; w < 2; w++) this.#loops.push(this.#loop(prng(this.#seed * 7919 + this.#round * 31 + w)));
  }

  async pause(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
    this.#loops = [];
  }

  stop(): Promise<void> { return this.pause(); }

  async #loop(rnd: () => number): Promise<void> {
    while (!this.#stopped) {
      const i = this.#next++;
      const kind = pickStep(rnd, this.#steps);
      try {
        await this.#sql.begin((tx) => runStep(tx, kind, i, rnd, this.#steps));
        this.committed++;
        await sleep(10);
      } catch (error) {
        this.failed++;
        if (!(error instanceof RolledBack)) await sleep(100);
      }
    }
  }
}
