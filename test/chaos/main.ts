/**
 * `npm run chaos -- --faults N --seed S [--no-swaps] [--major M]`: the
 * fault-injection suite from the command line. Prints the summary and exits
 * non-zero on any difference or failed recovery.
 */
import { Command } from 'commander';
import { SUPPORTED_MAJORS, type PgMajor } from '../../src/harness/cluster.js';
import { runChaos, formatSummary } from './suite.js';

const program = new Command('chaos')
  .option('--faults <n>', 'number of faults to inject', '100')
  .option('--seed <n>', 'PRNG seed (a failing run replays from its seed)', String(Date.now() % 1_000_000))
  .option('--major <n>', 'PostgreSQL major (default: PGTIDE_PG_MAJOR or 18)')
  .option('--no-swaps', 'leave the unique-swap step out of the workload (issue 10 case 4)')
  .option('--recovery-ms <n>', 'time limit for one recovery', '150000')
  .parse();

// Ctrl-C or a kill: exit handlers stop the clusters and pgtide (Cluster's exit hook, the suite's).
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

const opts = program.opts<{ faults: string; seed: string; major?: string; swaps: boolean; recoveryMs: string }>();
const major = opts.major ? Number(opts.major) : undefined;
if (major !== undefined && !SUPPORTED_MAJORS.includes(major as PgMajor)) {
  process.stderr.write(`--major must be one of ${SUPPORTED_MAJORS.join(', ')}\n`);
  process.exit(2);
}
const summary = await runChaos({
  faults: Number(opts.faults),
  seed: Number(opts.seed),
  swaps: opts.swaps,
  recoveryMs: Number(opts.recoveryMs),
  ...(major !== undefined ? { major: major as PgMajor } : {}),
});
process.stdout.write(`${formatSummary(summary)}\n`);
process.exit(summary.ok ? 0 : 1);
