/**
 * Shared helpers for the replication integration tests: a source/target
 * cluster pair, the engine run in-process with a fast configuration, a
 * catch-up wait based on a marker row, a row-for-row table comparison, and a
 * runner for the `pgtide` CLI as a child process.
 *
 * Everything a test creates is registered with a TestScope, whose cleanup()
 * (called from after()) kills child processes by their own pid, stops engines,
 * closes clients and destroys clusters, even when the test failed halfway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import type postgres from 'postgres';
import { stringify as toYaml } from 'yaml';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Cluster, defaultMajor, type ClusterOptions, type PgMajor } from '../../src/harness/cluster.js';
import { Engine, type EngineHooks } from '../../src/control/engine.js';
import { parseConfig, type ConfigInput, type PgtideConfig } from '../../src/control/config.js';
import { createLogger, silentLogger, type Logger } from '../../src/control/logger.js';
import { formatLsn } from '../../src/core/lsn.js';

/** Session settings that fix the text form of values, so comparisons do not depend on server defaults. */
export const PINNED_SETTINGS: Readonly<Record<string, string>> = {
  datestyle: 'ISO, MDY',
  intervalstyle: 'postgres',
  timezone: 'UTC',
  extra_float_digits: '3',
  bytea_output: 'hex',
  lc_monetary: 'C',
};

/** Published on every pair (created by startPair); waitForCatchUp inserts into it. */
export const MARKER_TABLE = 'public.pgtide_test_marker';
const MARKER_DDL = `CREATE TABLE ${MARKER_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`;

// ---------------------------------------------------------------------------------------------
// Cleanup scope
// ---------------------------------------------------------------------------------------------

export class TestScope {
  readonly #cleanups: { readonly label: string; readonly fn: () => unknown }[] = [];

  /** Registers a cleanup step; steps run in reverse order of registration. */
  defer(label: string, fn: () => unknown): void {
    this.#cleanups.push({ label, fn });
  }

  async cleanup(): Promise<void> {
    const errors: string[] = [];
    while (this.#cleanups.length) {
      const step = this.#cleanups.pop()!;
      const started = Date.now();
      try {
        await withTimeout(Promise.resolve().then(step.fn), 60_000, 'cleanup step did not finish');
      } catch (error) {
        errors.push(`${step.label}: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (process.env.PGTIDE_TEST_DEBUG) process.stderr.write(`cleanup ${step.label}: ${Date.now() - started} ms\n`);
    }
    if (errors.length) process.stderr.write(`test cleanup problems:\n  ${errors.join('\n  ')}\n`);
  }

  /** A temporary directory removed at cleanup. */
  tempDir(prefix = 'pgtide-test-'): string {
    const dir = mkdtempSync(path.join(tmpdir(), prefix));
    this.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }
}

// ---------------------------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------------------------

/** A client with pinned output settings (see PINNED_SETTINGS), ended at cleanup. */
export function pinnedSql(scope: TestScope, cluster: Cluster, database = 'postgres', options: postgres.Options<Record<string, postgres.PostgresType>> = {}): postgres.Sql {
  const sql = cluster.sql(database, { max: 4, connect_timeout: 10, ...options, connection: { ...PINNED_SETTINGS, application_name: 'pgtide-test', ...(options.connection ?? {}) } });
  scope.defer(`end client of ${cluster.name}`, () => sql.end({ timeout: 2 }));
  return sql;
}

export async function startCluster(scope: TestScope, options: ClusterOptions): Promise<Cluster> {
  const cluster = await Cluster.start(options);
  scope.defer(`destroy cluster ${cluster.name}`, () => cluster.destroy());
  return cluster;
}

export interface Pair {
  readonly major: PgMajor;
  readonly source: Cluster;
  readonly target: Cluster;
  /** The database replicated (same name on both sides); `postgres` unless made by databasePair(). */
  readonly database: string;
  readonly sourceUrl: string;
  readonly targetUrl: string;
  /** Pinned-settings clients to the database on each side. */
  readonly src: postgres.Sql;
  readonly dst: postgres.Sql;
}

/** The parts of a pair that a config needs. */
export type Endpoints = Pick<Pair, 'sourceUrl' | 'targetUrl'>;

export interface PairOptions {
  /** The source's major (and the target's unless `targetMajor`); default PGTIDE_PG_MAJOR or 18. */
  readonly major?: PgMajor;
  /** A target of another major than the source (pgtide supports targets at or above the source's). */
  readonly targetMajor?: PgMajor;
  readonly name?: string;
  readonly sourceSettings?: Readonly<Record<string, string | number>>;
  readonly targetSettings?: Readonly<Record<string, string | number>>;
  readonly sourceWalLevel?: 'logical' | 'replica';
}

/** Starts a source and a target cluster (in parallel) and creates the marker table on both. */
export async function startPair(scope: TestScope, options: PairOptions = {}): Promise<Pair> {
  const major = options.major ?? defaultMajor();
  const name = options.name ?? 'pair';
  const [source, target] = await Promise.all([
    startCluster(scope, { major, name: `${name}-src`, walLevel: options.sourceWalLevel ?? 'logical', ...(options.sourceSettings ? { settings: options.sourceSettings } : {}) }),
    startCluster(scope, { major: options.targetMajor ?? major, name: `${name}-dst`, ...(options.targetSettings ? { settings: options.targetSettings } : {}) }),
  ]);
  const src = pinnedSql(scope, source);
  const dst = pinnedSql(scope, target);
  await Promise.all([src.unsafe(MARKER_DDL), dst.unsafe(MARKER_DDL)]);
  return { major, source, target, database: 'postgres', sourceUrl: source.url, targetUrl: target.url, src, dst };
}

/**
 * Another database of the same clusters, created on both sides with its own
 * marker table: an isolated replication (own slot, publication, origin and
 * state) for a test that must not disturb the file's main one. The target's
 * database may have another name (`targetDatabase`), so that one cluster can
 * be both ends.
 */
export async function databasePair(scope: TestScope, pair: Pick<Pair, 'major' | 'source' | 'target'>, database: string, targetDatabase = database): Promise<Pair> {
  await Promise.all([pair.source.createDatabase(database), pair.target.createDatabase(targetDatabase)]);
  const src = pinnedSql(scope, pair.source, database);
  const dst = pinnedSql(scope, pair.target, targetDatabase);
  await Promise.all([src.unsafe(MARKER_DDL), dst.unsafe(MARKER_DDL)]);
  return { major: pair.major, source: pair.source, target: pair.target, database, sourceUrl: pair.source.urlFor(database), targetUrl: pair.target.urlFor(targetDatabase), src, dst };
}

/** Runs the same DDL on both sides (as one multi-statement query each). */
export async function ddlBoth(pair: Pick<Pair, 'src' | 'dst'>, ddl: string): Promise<void> {
  await pair.src.unsafe(ddl);
  await pair.dst.unsafe(ddl);
}

// ---------------------------------------------------------------------------------------------
// Engine in-process
// ---------------------------------------------------------------------------------------------

/** A logger for engines under test: silent unless PGTIDE_TEST_LOG names a level. */
export function testLogger(): Logger {
  const level = process.env.PGTIDE_TEST_LOG;
  return level ? createLogger({ level }) : silentLogger();
}

/** A logger that keeps every JSON line it writes, for tests that assert on log messages. */
export function capturingLogger(): { readonly lines: string[]; readonly logger: Logger } {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _encoding, done) { lines.push(chunk.toString()); done(); } });
  return { lines, logger: pino({ level: 'info' }, sink) };
}

/** The config input for a pair: fast batching and status updates; `overrides` wins. */
export function configInput(pair: Endpoints, overrides: Partial<ConfigInput> & Record<string, unknown> = {}): ConfigInput {
  const base: ConfigInput = {
    name: 'pgtide',
    source: { url: pair.sourceUrl },
    target: { url: pair.targetUrl },
    apply: { batchMaxAgeMs: 10 },
    statusIntervalMs: 1000,
    sequences: { enabled: false },
  };
  const merged = { ...base, ...overrides } as ConfigInput;
  if (overrides.apply) merged.apply = { batchMaxAgeMs: 10, ...overrides.apply };
  // The marker table must be replicated for waitForCatchUp.
  if (merged.tables && !merged.tables.some((t) => /pgtide_test_marker/.test(t))) merged.tables = [...merged.tables, MARKER_TABLE];
  return merged;
}

export interface RunningEngine {
  readonly engine: Engine;
  readonly config: PgtideConfig;
  /** Settles when run() settles. Never rejects (see `error`). */
  readonly done: Promise<void>;
  /** Resolves when the engine reaches streaming; rejects when run() fails before that. */
  readonly streaming: Promise<void>;
  readonly finished: boolean;
  /** The error run() failed with, if it did. */
  readonly error: unknown;
  /** Aborts and waits for run() to settle; throws run()'s error, if any. */
  stop(): Promise<void>;
}

export function startEngine(scope: TestScope, config: PgtideConfig, hooks: EngineHooks = {}, logger: Logger = testLogger()): RunningEngine {
  const controller = new AbortController();
  let onStreaming!: () => void;
  let onFailed!: (error: unknown) => void;
  const streaming = new Promise<void>((resolve, reject) => { onStreaming = resolve; onFailed = reject; });
  streaming.catch(() => {});
  const engine = new Engine(config, logger, { ...hooks, onStreaming: () => { onStreaming(); hooks.onStreaming?.(); } });
  const state = { finished: false, error: undefined as unknown };
  const done = engine.run(controller.signal).then(
    () => { state.finished = true; onFailed(new Error('engine stopped before streaming')); },
    (error: unknown) => { state.finished = true; state.error = error; onFailed(error); },
  );
  const running: RunningEngine = {
    engine,
    config,
    done,
    streaming,
    get finished() { return state.finished; },
    get error() { return state.error; },
    async stop() {
      controller.abort();
      await done;
      if (state.error !== undefined) throw state.error;
    },
  };
  scope.defer(`stop engine ${config.name}`, async () => { controller.abort(); await done; });
  return running;
}

/** parseConfig(configInput(...)) + startEngine + wait until streaming. */
export async function startStreaming(scope: TestScope, pair: Endpoints, overrides: Partial<ConfigInput> & Record<string, unknown> = {}, hooks: EngineHooks = {}): Promise<RunningEngine> {
  const running = startEngine(scope, parseConfig(configInput(pair, overrides)), hooks);
  await withTimeout(running.streaming, 120_000, 'engine did not reach streaming');
  return running;
}

// ---------------------------------------------------------------------------------------------
// Waiting and comparing
// ---------------------------------------------------------------------------------------------

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} within ${ms / 1000} s`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns a non-undefined value; errors from `check` count as "not yet". */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, options: { timeoutMs?: number; intervalMs?: number; failFast?: () => unknown } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let lastError: unknown;
  for (;;) {
    const fatal = options.failFast?.();
    if (fatal !== undefined) throw fatal instanceof Error ? fatal : new Error(String(fatal));
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})` : ''}`);
    }
    await sleep(options.intervalMs ?? 50);
  }
}

export interface CatchUpOptions {
  /** A running engine: waiting fails at once if it stops. */
  readonly engine?: RunningEngine;
  /** A CLI child: waiting fails at once if it exits. */
  readonly cli?: CliProcess;
  readonly timeoutMs?: number;
  readonly subscription?: string;
}

/**
 * Waits until everything committed on the source so far is on the target:
 * commits a marker row on the source and waits for that row on the target.
 * Transactions apply in commit order and batches commit atomically, so once
 * the marker is there, so is everything committed before it.
 */
export async function waitForCatchUp(pair: Pick<Pair, 'src' | 'dst'>, options: CatchUpOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const started = Date.now();
  const failFast = () => {
    if (options.engine?.finished) return new Error(`engine stopped while waiting for catch-up: ${describeError(options.engine.error)}`);
    if (options.cli?.exitCode !== undefined) return new Error(`pgtide exited (${options.cli.exitCode}) while waiting for catch-up; stderr tail:\n${options.cli.stderrTail()}`);
    return undefined;
  };
  // The source may be restarting: retry the marker insert as well.
  const marker = await waitFor('the marker insert on the source', async () => {
    const [row] = await pair.src.unsafe<{ id: string; lsn: string }[]>(`INSERT INTO ${MARKER_TABLE} DEFAULT VALUES RETURNING id::text, pg_current_wal_lsn()::text AS lsn`);
    return row;
  }, { timeoutMs, failFast });
  try {
    await waitFor(`marker ${marker.id} on the target`, async () => {
      const rows = await pair.dst.unsafe(`SELECT 1 FROM ${MARKER_TABLE} WHERE id = $1::bigint`, [marker.id]);
      return rows.length ? true : undefined;
    }, { timeoutMs: Math.max(1000, timeoutMs - (Date.now() - started)), failFast });
  } catch (error) {
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${await replicationDiagnostics(pair, options, marker.lsn)}`);
  }
}

function describeError(error: unknown): string {
  if (error === undefined) return '(no error)';
  if (error instanceof Error) return `${(error as { code?: string }).code ? `[${(error as { code?: string }).code}] ` : ''}${error.message}`;
  return String(error);
}

async function replicationDiagnostics(pair: Pick<Pair, 'src' | 'dst'>, options: CatchUpOptions, markerLsn: string): Promise<string> {
  const lines = [`marker committed at source LSN ~${markerLsn}`];
  if (options.engine) {
    const s = options.engine.engine.state;
    lines.push(`engine phase ${s.phase}, durable ${s.durableLsn !== undefined ? formatLsn(s.durableLsn) : '-'}`);
  }
  try {
    const slots = await pair.src.unsafe<{ slot_name: string; active: boolean; confirmed: string | null }[]>(`SELECT slot_name, active, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots`);
    lines.push(`source slots: ${slots.map((s) => `${s.slot_name} active=${s.active} confirmed=${s.confirmed}`).join('; ') || '(none)'}`);
  } catch (error) { lines.push(`source slots: ${describeError(error)}`); }
  try {
    const progress = await pair.dst.unsafe<{ subscription: string; end_lsn: string; applied_at: Date }[]>(`SELECT subscription, end_lsn::text, applied_at FROM pgtide.apply_progress`);
    lines.push(`target apply_progress: ${progress.map((p) => `${p.subscription} ${p.end_lsn} at ${p.applied_at.toISOString()}`).join('; ') || '(none)'}`);
    const states = await pair.dst.unsafe<{ t: string; state: string }[]>(`SELECT format('%I.%I', schema_name, table_name) AS t, state FROM pgtide.table_state ORDER BY 1`);
    lines.push(`target table_state: ${states.map((s) => `${s.t}=${s.state}`).join(', ')}`);
  } catch (error) { lines.push(`target state: ${describeError(error)}`); }
  if (options.cli) lines.push(`pgtide stderr tail:\n${options.cli.stderrTail()}`);
  return lines.join('\n');
}

export interface CompareOptions {
  /** ORDER BY expression over alias t; default the row's text form. */
  readonly orderBy?: string;
  /** Compare these columns only (a select list over alias t); default the whole row. */
  readonly columns?: string;
}

export interface TableFingerprint { readonly count: number; readonly md5: string }

export async function fingerprint(sql: postgres.Sql, table: string, options: CompareOptions = {}): Promise<TableFingerprint> {
  const row = options.columns ? `ROW(${options.columns})::text` : 't::text';
  const order = options.orderBy ?? row;
  const [r] = await sql.unsafe<{ n: number; h: string }[]>(`SELECT count(*)::int AS n, md5(coalesce(string_agg(${row}, '|' ORDER BY ${order}), '')) AS h FROM ${table} AS t`);
  return { count: r!.n, md5: r!.h };
}

/** Rows as text in a fixed order (the comparison's form of each row). */
export async function rowTexts(sql: postgres.Sql, table: string, options: CompareOptions = {}): Promise<string[]> {
  const row = options.columns ? `ROW(${options.columns})::text` : 't::text';
  const rows = await sql.unsafe<{ r: string }[]>(`SELECT ${row} AS r FROM ${table} AS t ORDER BY ${options.orderBy ?? row}`);
  return rows.map((x) => x.r);
}

/** Rows of `source` not on `target` (missing) and of `target` not on `source` (extra), as multisets. */
export function multisetDiff(source: readonly string[], target: readonly string[]): { readonly missing: string[]; readonly extra: string[] } {
  const counts = new Map<string, number>();
  for (const r of source) counts.set(r, (counts.get(r) ?? 0) + 1);
  const extra: string[] = [];
  for (const r of target) {
    const n = counts.get(r) ?? 0;
    if (n > 0) counts.set(r, n - 1);
    else extra.push(r);
  }
  const missing: string[] = [];
  for (const [r, n] of counts) for (let i = 0; i < n; i++) missing.push(r);
  return { missing, extra };
}

function clip(text: string, max = 300): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;
}

/**
 * Compares a table row for row (count and md5 of every row's text form in a
 * fixed order); on a mismatch, fails with the rows only on one side.
 */
export async function assertTablesEqual(pair: Pick<Pair, 'src' | 'dst'>, table: string, options: CompareOptions = {}): Promise<TableFingerprint> {
  const [a, b] = await Promise.all([fingerprint(pair.src, table, options), fingerprint(pair.dst, table, options)]);
  if (a.count === b.count && a.md5 === b.md5) return a;
  const [left, right] = await Promise.all([rowTexts(pair.src, table, options), rowTexts(pair.dst, table, options)]);
  const { missing, extra } = multisetDiff(left, right);
  const lines = [`table ${table} differs: source ${a.count} rows (md5 ${a.md5}), target ${b.count} rows (md5 ${b.md5})`];
  if (missing.length === 0 && extra.length === 0) lines.push('  same rows, different order (is the ORDER BY unique?)');
  if (missing.length) lines.push(`  ${missing.length} row(s) only on the source, e.g.:`, ...missing.slice(0, 5).map((r) => `    - ${clip(r)}`));
  if (extra.length) lines.push(`  ${extra.length} row(s) only on the target, e.g.:`, ...extra.slice(0, 5).map((r) => `    + ${clip(r)}`));
  assert.fail(lines.join('\n'));
}

/** Rows of a query on the target, as text, for direct assertions. */
export async function texts(sql: postgres.Sql, query: string, params: (string | number | null)[] = []): Promise<string[]> {
  const rows = await sql.unsafe<{ r: string }[]>(query, params as string[]);
  return rows.map((x) => String(x.r));
}

// ---------------------------------------------------------------------------------------------
// CLI as a child process
// ---------------------------------------------------------------------------------------------

export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Writes a YAML config (object or raw text) into a scope temp dir; returns its path. */
export function writeConfigFile(scope: TestScope, config: object | string, name = 'pgtide.yaml'): string {
  const dir = scope.tempDir('pgtide-cli-');
  const file = path.join(dir, name);
  writeFileSync(file, typeof config === 'string' ? config : toYaml(config));
  return file;
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** undefined while running; the exit code, or the signal name when killed. */
  readonly exitCode: number | string | undefined;
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
  stderrTail(lines?: number): string;
  /** Resolves when stderr (log lines) matches; rejects if the process exits first or on timeout. */
  waitForStderr(pattern: RegExp, timeoutMs?: number, from?: number): Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

const MAX_CAPTURE = 4 * 1024 * 1024;

export function startCli(scope: TestScope, args: readonly string[], env: Readonly<Record<string, string>> = {}): CliProcess {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PGTIDE_LOG_LEVEL: 'info', ...env },
  });
  if (child.pid === undefined) throw new Error('could not spawn the pgtide CLI');
  const pid = child.pid;
  let out = '';
  let err = '';
  const watchers = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { out = (out + chunk).slice(-MAX_CAPTURE); });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { err = (err + chunk).slice(-MAX_CAPTURE); for (const w of watchers) w(); });
  const state = { exitCode: undefined as number | string | undefined };
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      state.exitCode = code ?? signal ?? 'unknown';
      for (const w of watchers) w();
      resolve({ code, signal });
    });
  });
  scope.defer(`kill pgtide pid ${pid}`, async () => {
    if (state.exitCode === undefined) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    }
  });
  const cli: CliProcess = {
    child,
    pid,
    get exitCode() { return state.exitCode; },
    exited,
    stdout: () => out,
    stderr: () => err,
    stderrTail: (lines = 25) => err.split('\n').slice(-lines).join('\n'),
    waitForStderr(pattern, timeoutMs = 60_000, from = 0) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pattern.test(err.slice(from))) { done(); resolve(); return; }
          if (state.exitCode !== undefined) { done(); reject(new Error(`pgtide exited (${state.exitCode}) before its log matched ${pattern}; stderr tail:\n${cli.stderrTail()}`)); }
        };
        const timer = setTimeout(() => { done(); reject(new Error(`pgtide log did not match ${pattern} within ${timeoutMs / 1000} s; stderr tail:\n${cli.stderrTail()}`)); }, timeoutMs);
        const done = () => { clearTimeout(timer); watchers.delete(check); };
        watchers.add(check);
        check();
      });
    },
    kill(signal) {
      if (state.exitCode === undefined) process.kill(pid, signal);
    },
  };
  return cli;
}

export interface CliResult { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stdout: string; readonly stderr: string }

/** Runs a CLI command to completion (killed with SIGKILL after timeoutMs). */
export async function runCli(scope: TestScope, args: readonly string[], options: { timeoutMs?: number; env?: Readonly<Record<string, string>> } = {}): Promise<CliResult> {
  const cli = startCli(scope, args, options.env);
  const timer = setTimeout(() => cli.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const { code, signal } = await cli.exited;
  clearTimeout(timer);
  return { code, signal, stdout: cli.stdout(), stderr: cli.stderr() };
}

/** A YAML-ready config object for the CLI, with the same fast settings as configInput(). */
export function cliConfig(pair: Endpoints, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return configInput(pair, overrides as Partial<ConfigInput>) as unknown as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------------------------

/** A seeded PRNG (mulberry32), so a failing random schedule can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The text of a subscription's replication origin progress on the target, or undefined. */
export async function originProgress(dst: postgres.Sql, name = 'pgtide'): Promise<string | undefined> {
  const [row] = await dst.unsafe<{ lsn: string | null }[]>(`SELECT pg_replication_origin_progress(roname, true)::text AS lsn FROM pg_replication_origin
      WHERE roname = $1 || (SELECT oid FROM pg_database WHERE datname = current_database())`, [`pgtide_${name}_`]);
  return row?.lsn ?? undefined;
}

// ---------------------------------------------------------------------------------------------
// Continuous workload
// ---------------------------------------------------------------------------------------------

export type WorkloadStep = (tx: postgres.TransactionSql, i: number, rnd: () => number) => Promise<void>;

export interface WorkloadOptions {
  /** Concurrent sessions (each its own loop); default 2. */
  readonly concurrency?: number;
  /** Pause between transactions of one session, ms; default 5. */
  readonly pauseMs?: number;
  readonly seed?: number;
}

/**
 * Small transactions in a loop until stop(). Failures (a server going away, a
 * deadlock between the sessions) are counted and the loop carries on after a
 * short pause: whatever the source committed is what the target must match.
 */
export class Workload {
  committed = 0;
  failed = 0;
  lastError: unknown;
  readonly #sql: postgres.Sql;
  readonly #step: WorkloadStep;
  readonly #options: WorkloadOptions;
  #stopped = false;
  #loops: Promise<void>[] = [];
  #next = 0;

  constructor(sql: postgres.Sql, step: WorkloadStep, options: WorkloadOptions = {}) {
    this.#sql = sql;
    this.#step = step;
    this.#options = options;
  }

  start(): this {
    this.#stopped = false;
    const n = this.#options.concurrency ?? 2;
    for (let w = 0; w < n; w++) this.#loops.push(this.#loop((this.#options.seed ?? 1) * 1000 + w + this.#next));
    return this;
  }

  async #loop(seed: number): Promise<void> {
    const rnd = prng(seed);
    while (!this.#stopped) {
      const i = this.#next++;
      try {
        await this.#sql.begin((tx) => this.#step(tx, i, rnd));
        this.committed++;
        await sleep(this.#options.pauseMs ?? 5);
      } catch (error) {
        this.failed++;
        this.lastError = error;
        await sleep(100);
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
    this.#loops = [];
  }
}

/**
 * Tables and a step for restart and crash tests: a keyed table with inserts,
 * updates and deletes; a keyless REPLICA IDENTITY FULL table full of identical
 * rows (a change applied twice, or lost, shows as a row too many or too few);
 * and now and then a transaction large enough to be streamed.
 */
export const CHURN_DDL = `
  CREATE TABLE churn_acct (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text);
  CREATE TABLE churn_log (slot int, txt text);
  ALTER TABLE churn_log REPLICA IDENTITY FULL;
  CREATE TABLE churn_big (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, batch int, payload text);
`;
export const CHURN_TABLES = ['churn_acct', 'churn_log', 'churn_big'] as const;

export function churnStep(options: { bigEvery?: number; bigRows?: number } = {}): WorkloadStep {
  const bigEvery = options.bigEvery ?? 40;
  const bigRows = options.bigRows ?? 2000;
  return async (tx, i, rnd) => {
    await tx.unsafe(`INSERT INTO churn_acct (balance, note) VALUES ($1::int, 'n' || $1::int)`, [i]);
    await tx.unsafe(`UPDATE churn_acct SET balance = balance + 1 WHERE id = (SELECT max(id) - $1::int FROM churn_acct)`, [Math.floor(rnd() * 50)]);
    if (i % 3 === 0) await tx.unsafe(`DELETE FROM churn_acct WHERE id = (SELECT max(id) - $1::int FROM churn_acct)`, [10 + Math.floor(rnd() * 50)]);
    const slot = Math.floor(rnd() * 20);
    await tx.unsafe(`INSERT INTO churn_log VALUES ($1::int, 'same')`, [slot]);
    if (i % 4 === 0) await tx.unsafe(`DELETE FROM churn_log WHERE ctid = (SELECT ctid FROM churn_log WHERE slot = $1 LIMIT 1)`, [(slot + 1) % 20]);
    if (i % 5 === 0) await tx.unsafe(`UPDATE churn_log SET txt = txt || '+' WHERE ctid = (SELECT ctid FROM churn_log WHERE slot = $1 LIMIT 1)`, [(slot + 2) % 20]);
    if (bigEvery > 0 && i % bigEvery === bigEvery - 1) {
      await tx.unsafe(`INSERT INTO churn_big (batch, payload) SELECT $1, repeat(md5(g::text), 4) FROM generate_series(1, $2::int) g`, [i, bigRows]);
      await tx.unsafe(`UPDATE churn_big SET payload = 'u' WHERE batch = $1 AND id % 3 = 0`, [i]);
    }
  };
}

export async function assertChurnEqual(pair: Pick<Pair, 'src' | 'dst'>): Promise<void> {
  await assertTablesEqual(pair, 'churn_acct', { orderBy: 't.id' });
  await assertTablesEqual(pair, 'churn_log');
  await assertTablesEqual(pair, 'churn_big', { orderBy: 't.id' });
}
