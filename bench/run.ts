/**
 * Benchmark entry point: pgtide against PostgreSQL's built-in logical
 * replication, side by side, on fresh throwaway clusters of one major.
 *
 *   node dist/bench/run.js <scenario|all> [--major 18] [--scale N] [--only pgtide|builtin] [--quick]
 *
 * Prints one table per scenario and writes bench/results/<timestamp>-<scenario>.json.
 * Exits 1 when any side failed or any target did not match its source.
 * See docs/benchmarks.md.
 */
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions, USAGE, type BenchOptions } from './lib/options.js';
import type { Scenario } from './lib/scenario.js';
import { buildRows, machineInfo, renderTable, writeResult, type Failure, type ScenarioOutcome } from './lib/report.js';
import { errorMessage } from './lib/cleanup.js';
import { initialCopy } from './scenarios/initial-copy.js';
import { bulk } from './scenarios/bulk.js';
import { oltp } from './scenarios/oltp.js';
import { largeTxn } from './scenarios/large-txn.js';
import { decode } from './scenarios/decode.js';
import { twoWay } from './scenarios/two-way.js';
import { ddlLag } from './scenarios/ddl-lag.js';
import { oltpDetect } from './scenarios/oltp-detect.js';

const SCENARIOS: readonly Scenario[] = [initialCopy, bulk, oltp, largeTxn, decode, twoWay, ddlLag, oltpDetect];
/** Run by name only: pgtide against itself (a setting on and off), not part of the side-by-side `all`. */
const BY_NAME_ONLY: ReadonlySet<Scenario> = new Set([oltpDetect]);

/** dist/bench/run.js -> <repo>/bench/results, wherever the command is run from. */
const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/results');

function log(message: string): void {
  const stamp = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[${stamp}] ${message}\n`);
}

async function runScenario(scenario: Scenario, options: BenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const started = performance.now();
  console.log(`\n=== ${scenario.name}: ${scenario.title} (PostgreSQL ${options.major}) ===`);
  let outcome: ScenarioOutcome;
  try {
    outcome = await scenario.run({ major: options.major, options, log: (m) => log(`${scenario.name}: ${m}`) });
  } catch (error) {
    // A failure outside any one side (e.g. loading the shared source).
    const failure: Failure = { side: 'setup', kind: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) };
    outcome = { sizes: {}, metrics: [], values: {}, notes: [], failures: [failure] };
  }
  const seconds = (performance.now() - started) / 1000;
  const rows = buildRows(outcome);
  if (outcome.skipped) console.log(`SKIPPED: ${outcome.skipped}`);
  else {
    console.log(`sizes: ${Object.entries(outcome.sizes).map(([k, v]) => `${k}=${v}`).join(', ')}`);
    console.log(renderTable(rows));
  }
  for (const note of outcome.notes) console.log(`  - ${note}`);
  for (const failure of outcome.failures) {
    const banner = failure.kind === 'mismatch' ? '!!! MISMATCH (target differs from source: this result is invalid)' : '!!! FAILED';
    console.log(`${banner} [${failure.side}]\n${failure.message}`);
  }
  const ok = outcome.failures.length === 0;
  const file = writeResult(RESULTS_DIR, {
    scenario: scenario.name,
    title: scenario.title,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    seconds,
    postgresMajor: options.major,
    machine: machineInfo(),
    options: { ...options },
    sizes: outcome.sizes,
    rows,
    notes: outcome.notes,
    failures: outcome.failures,
    skipped: outcome.skipped ?? null,
    ok,
  });
  console.log(`(${seconds.toFixed(0)} s; ${file})`);
  return ok;
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(errorMessage(error));
    return 2;
  }
  const chosen = options.scenario === 'all' ? SCENARIOS.filter((s) => !BY_NAME_ONLY.has(s)) : SCENARIOS.filter((s) => s.name === options.scenario);
  if (chosen.length === 0) {
    console.error(`unknown scenario "${options.scenario}"\n\n${USAGE}`);
    return 2;
  }
  const started = performance.now();
  let ok = true;
  for (const scenario of chosen) ok = (await runScenario(scenario, options)) && ok;
  console.log(`\n${ok ? 'all scenarios passed' : 'SOME SCENARIOS FAILED'} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return ok ? 0 : 1;
}

// Ctrl-C / kill: exit through process.exit so the 'exit' hooks run — they
// stop every cluster (src/harness/cluster.ts) and kill the pgtide child.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping clusters and children`);
    process.exit(130);
  });
}

process.exitCode = await main();
