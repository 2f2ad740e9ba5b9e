/**
 * pgtide as a child process: `node dist/src/cli/main.js start --config <file>`.
 *
 * Paused by stopping the process (SIGTERM) and resumed by starting it again
 * from the state it keeps on the target; progress is read from the target's
 * pgtide.apply_progress and pgtide.table_state tables.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { parseConfig, type ConfigInput } from '../../src/control/config.js';
import { ZERO_LSN, type Lsn } from '../../src/core/lsn.js';
import type { Replicator, ReplicatorSetup } from './types.js';
import { dotted, dropSlotIfExists, parseNullableLsn, slotWalsenderPids, waitUntil } from '../lib/db.js';
import { readProcMemory, type ProcessGroups } from '../lib/memory.js';
import { errorMessage } from '../lib/cleanup.js';

const NAME = 'bench';
/** The names pgtide derives from `name: bench` (see slotName/publicationName in src/control/config.ts). */
const SLOT = `${NAME}_slot`;
const PUBLICATION = `${NAME}_pub`;

/** dist/bench/runners/pgtide.js -> dist/src/cli/main.js; PGTIDE_BENCH_CLI overrides it. */
function cliPath(): string {
  return process.env.PGTIDE_BENCH_CLI ?? fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
}

/** Children still running when the bench process exits (even on an uncaught error) are killed by pid. */
const LIVE_CHILDREN = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackChild(child: ChildProcess): void {
  LIVE_CHILDREN.add(child);
  child.once('exit', () => LIVE_CHILDREN.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of LIVE_CHILDREN) if (c.pid !== undefined) try { process.kill(c.pid, 'SIGKILL'); } catch { /* already gone */ }
  });
}

interface ExitInfo { readonly code: number | null; readonly signal: NodeJS.Signals | null }

export class PgtideReplicator implements Replicator {
  readonly side = 'pgtide' as const;
  readonly settings: string;
  readonly #setup: ReplicatorSetup;
  readonly #dir: string;
  readonly #configFile: string;
  readonly #logFile: string;
  #log: WriteStream | undefined;
  #tail: string[] = [];
  #child: ChildProcess | undefined;
  #exit: ExitInfo | undefined;
  #expectExit = false;
  #peakHwm = 0;
  #started = false;
  #stopped = false;

  constructor(setup: ReplicatorSetup, tuning: { readonly streamedApply?: boolean | undefined; readonly copyMinRows?: number | undefined; readonly ddlCapture?: boolean; readonly conflictDetect?: boolean | undefined; readonly conflictResolver?: string | undefined } = {}) {
    this.#setup = setup;
    const config: ConfigInput = {
      name: NAME,
      source: { url: setup.source.urlFor(setup.sourceDb) },
      target: { url: setup.target.urlFor(setup.targetDb) },
      tables: setup.tables.map(dotted),
      copy: { parallelism: setup.copyParallelism },
      apply: { batchMaxTransactions: 1000, batchMaxChanges: 20000, batchMaxAgeMs: 10, ...(tuning.streamedApply === undefined ? {} : { streamedApply: tuning.streamedApply }), ...(tuning.copyMinRows === undefined ? {} : { copyMinRows: tuning.copyMinRows }) },
      memoryCap: '64MB',
      ...(tuning.ddlCapture ? { ddl: { capture: true } } : {}),
      ...(tuning.conflictDetect === false ? { conflicts: { detect: false } } : {}),
      ...(tuning.conflictResolver !== undefined ? { conflicts: { policy: 'custom', resolver: tuning.conflictResolver } } : {}),
    };
    // Validating against the engine's own schema turns a config drift into a
    // clear bench error instead of a child that exits at start-up.
    const parsed = parseConfig(config, 'bench pgtide config');
    this.#dir = mkdtempSync(path.join(tmpdir(), 'pgtide-bench-'));
    this.#configFile = path.join(this.#dir, 'pgtide.yaml');
    this.#logFile = path.join(this.#dir, 'pgtide.log');
    writeFileSync(this.#configFile, stringify(config));
    this.settings = `copy.parallelism ${setup.copyParallelism}; apply batch ≤ 1000 tx / 20000 changes / 10 ms; memoryCap 64MB; streamedApply ${parsed.apply.streamedApply ? 'on' : 'off'}; copyMinRows ${parsed.apply.copyMinRows}${parsed.ddl.capture ? '; ddl.capture on' : ''}; conflict detection ${parsed.conflicts.detect === false ? 'off' : 'on'}${parsed.conflicts.policy === 'custom' ? ', policy custom (a resolver module)' : ''}`;
  }

  async start(): Promise<void> {
    this.#started = true;
    this.#spawn();
  }

  #spawn(): void {
    const cli = cliPath();
    if (!existsSync(cli)) {
      throw new Error(`pgtide CLI not found at ${cli}: the engine is not built yet (npm run build), or set PGTIDE_BENCH_CLI`);
    }
    this.#log ??= createWriteStream(this.#logFile, { flags: 'a' });
    this.#exit = undefined;
    this.#expectExit = false;
    // PGTIDE_BENCH_NODE_ARGS: extra node flags for the pgtide child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
    // (NODE_OPTIONS refuses --cpu-prof). See docs/benchmarks.md, "Profiling".
    const nodeArgs = (process.env.PGTIDE_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...nodeArgs, cli, 'start', '--config', this.#configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    trackChild(child);
    const keep = (chunk: Buffer): void => {
      this.#log?.write(chunk);
      this.#tail.push(...chunk.toString().split('\n').filter((line) => line.length > 0));
      if (this.#tail.length > 200) this.#tail.splice(0, this.#tail.length - 100);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.once('exit', (code, signal) => {
      this.#exit = { code, signal };
      if (!this.#expectExit) this.#setup.log(`pgtide exited unexpectedly (code ${code}, signal ${signal})`);
    });
    child.once('error', (error) => {
      this.#exit = { code: null, signal: null };
      this.#tail.push(`spawn error: ${errorMessage(error)}`);
    });
  }

  #recentOutput(): string {
    return `${this.#tail.slice(-30).join('\n')}\n(full log: ${this.#logFile})`;
  }

  async checkHealth(): Promise<void> {
    if (this.#exit && !this.#expectExit) {
      throw new Error(`pgtide exited (code ${this.#exit.code}, signal ${this.#exit.signal}); last output:\n${this.#recentOutput()}`);
    }
  }

  async waitCopyDone(timeoutMs: number): Promise<void> {
    const expected = this.#setup.tables.length;
    await waitUntil(async () => {
      try {
        const [row] = await this.#setup.targetSql<{ total: number; ready: number }[]>`
          SELECT count(*)::int AS total, count(*) FILTER (WHERE state = 'ready')::int AS ready
          FROM pgtide.table_state WHERE subscription = ${NAME}`;
        return row!.total === expected && row!.ready === expected;
      } catch (error) {
        if (isUndefinedTable(error)) return false; // pgtide has not created its state schema yet
        throw error;
      }
    }, { what: 'the pgtide initial copy (all pgtide.table_state rows ready)', timeoutMs, pollMs: 100, health: () => this.checkHealth() });
  }

  async appliedLsn(): Promise<Lsn> {
    try {
      const rows = await this.#setup.targetSql<{ lsn: string }[]>`SELECT end_lsn::text AS lsn FROM pgtide.apply_progress WHERE subscription = ${NAME}`;
      return rows.length === 0 ? ZERO_LSN : parseNullableLsn(rows[0]!.lsn);
    } catch (error) {
      if (isUndefinedTable(error)) return ZERO_LSN;
      throw error;
    }
  }

  #recordHwm(): void {
    const pid = this.#child?.pid;
    if (pid === undefined || this.#exit) return;
    const memory = readProcMemory(pid);
    if (memory) this.#peakHwm = Math.max(this.#peakHwm, memory.vmHwmBytes);
  }

  /** SIGTERM, then SIGKILL if it has not exited within 30 s. */
  async #terminate(): Promise<void> {
    const child = this.#child;
    if (!child || this.#exit) return;
    this.#recordHwm(); // VmHWM is gone with the process: read it just before
    this.#expectExit = true;
    const exited = new Promise<void>((resolve) => {
      if (this.#exit) resolve();
      else child.once('exit', () => resolve());
    });
    if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      this.#setup.log('pgtide did not exit within 30 s of SIGTERM; sending SIGKILL');
      if (child.pid !== undefined) try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
    }, 30_000);
    await exited;
    clearTimeout(timer);
    const exit = this.#exit as ExitInfo | undefined;
    if (exit && exit.code !== 0 && exit.signal !== 'SIGTERM') {
      this.#setup.log(`pgtide exited with code ${exit.code} on SIGTERM; last output:\n${this.#recentOutput()}`);
    }
  }

  async pause(): Promise<void> {
    await this.#terminate();
    // The walsender notices the closed connection a moment later; until then
    // the slot is "active" and a restart would be refused.
    await waitUntil(async () => (await slotWalsenderPids(this.#setup.sourceSql, SLOT)).length === 0,
      { what: `slot ${SLOT} to be released after pgtide stopped`, timeoutMs: 15_000, pollMs: 50 });
  }

  async resume(): Promise<void> {
    this.#spawn();
  }

  async stop(): Promise<void> {
    if (!this.#started || this.#stopped) return;
    this.#stopped = true;
    try {
      await this.#terminate();
      // pgtide keeps its slot and publication across restarts; the benchmark
      // owns their lifetime, so it removes them (WAL retention, name reuse).
      await dropSlotIfExists(this.#setup.sourceSql, SLOT);
      await this.#setup.sourceSql.unsafe(`DROP PUBLICATION IF EXISTS ${PUBLICATION}`);
    } finally {
      await new Promise<void>((resolve) => (this.#log ? this.#log.end(() => resolve()) : resolve()));
      // Keep the log of a run that went wrong; it is the only trace of why.
      if (this.#exit && !this.#expectExit) this.#setup.log(`pgtide log kept at ${this.#logFile}`);
      else rmSync(this.#dir, { recursive: true, force: true });
    }
  }

  async processes(): Promise<ProcessGroups> {
    const pid = this.#child && !this.#exit ? this.#child.pid : undefined;
    return { replicator: pid === undefined ? [] : [pid], walsender: await slotWalsenderPids(this.#setup.sourceSql, SLOT) };
  }

  peakRssBytes(): number | undefined {
    this.#recordHwm();
    return this.#peakHwm > 0 ? this.#peakHwm : undefined;
  }
}

function isUndefinedTable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && (error as { code: unknown }).code === '42P01';
}
