/**
 * decode: pgtide's pgoutput decoder in isolation, via runDecodeBench from
 * bench/decode-bench.ts (written separately). The built-in side has no
 * equivalent (its decoding is C inside the apply worker), so only pgtide's
 * figures appear. Skipped, with a note, while decode-bench.ts does not exist.
 */
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import type { MetricSpec, ScenarioOutcome } from '../lib/report.js';
import { errorMessage } from '../lib/cleanup.js';

interface DecodeBenchResult { readonly changesPerSecond: number; readonly bytes: number; readonly seconds: number }
type RunDecodeBench = (opts: { changes?: number }) => Promise<DecodeBenchResult>;

const METRICS: readonly MetricSpec[] = [
  { key: 'changes_per_s', label: 'decode rate', unit: 'changes/s', better: 'higher' },
  { key: 'mibps', label: 'decode throughput', unit: 'MiB/s', better: 'higher' },
  { key: 'seconds', label: 'decode time', unit: 's', better: 'info' },
];

function isRunner(value: unknown): value is RunDecodeBench {
  return typeof value === 'function';
}

async function run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const base = { sizes: { changes: ctx.options.decodeChanges ?? 'default' }, metrics: METRICS, notes: [] as string[] };
  if (!ctx.options.sides.includes('pgtide')) return { ...base, values: {}, failures: [], skipped: 'pgtide-only scenario; --only builtin given' };
  // A path in a variable: tsc must not resolve (and fail on) a module that
  // another engineer has not written yet.
  const modulePath = '../decode-bench.js';
  let runner: RunDecodeBench;
  try {
    const module: Record<string, unknown> = await import(new URL(modulePath, import.meta.url).href);
    const candidate = module.runDecodeBench;
    if (!isRunner(candidate)) return { ...base, values: {}, failures: [], skipped: 'bench/decode-bench.ts does not export runDecodeBench yet' };
    runner = candidate;
  } catch (error) {
    const code = typeof error === 'object' && error !== null && 'code' in error ? (error as { code: unknown }).code : undefined;
    if (code === 'ERR_MODULE_NOT_FOUND') return { ...base, values: {}, failures: [], skipped: `bench/decode-bench.ts is not there yet (${errorMessage(error)})` };
    throw error;
  }
  const opts = ctx.options.decodeChanges === undefined ? {} : { changes: ctx.options.decodeChanges };
  ctx.log(`running runDecodeBench(${JSON.stringify(opts)})`);
  const result = await runner(opts);
  return {
    ...base,
    values: { pgtide: { changes_per_s: result.changesPerSecond, mibps: result.bytes / 2 ** 20 / result.seconds, seconds: result.seconds } },
    notes: [`${result.bytes} bytes of pgoutput decoded in ${result.seconds.toFixed(3)} s`, 'no built-in or limit figure: this is pgtide\'s decoder alone, in process'],
    failures: [],
  };
}

export const decode: Scenario = { name: 'decode', title: 'pgoutput decoder micro-benchmark (pgtide only)', run };
