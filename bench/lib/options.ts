/**
 * Command-line options and the default sizes of every scenario.
 *
 * Defaults are chosen so that `all` (both replicators plus the limits) fits in
 * 20 minutes on a 2-core machine; docs/benchmarks.md lists them and the flags
 * that raise them to the headline sizes (1 GB copy, 10M-change transaction).
 */
import { parseArgs } from 'node:util';
import { SUPPORTED_MAJORS, defaultMajor, type PgMajor } from '../../src/harness/cluster.js';
import { SIDES, type Side } from '../runners/types.js';

export interface BenchOptions {
  readonly scenario: string;
  readonly major: PgMajor;
  /** Sides to run, in the order of the first round (later rounds alternate it). */
  readonly sides: readonly Side[];
  readonly limits: boolean;
  readonly quick: boolean;
  readonly repeat: number;
  /** initial-copy: pgbench scale factor; the TOAST table grows with it (~20 MB of tables per unit). */
  readonly copyScale: number;
  /** oltp: pgbench scale factor (branches = scale, so it bounds contention between clients). */
  readonly oltpScale: number;
  readonly oltpSeconds: number;
  readonly oltpClients: number;
  readonly bulkRows: number;
  readonly largeChanges: number;
  readonly decodeChanges: number | undefined;
  readonly copyParallelism: number;
  /** Built-in subscription with binary = true. */
  readonly builtinBinary: boolean;
  /** pgtide's apply.streamedApply (apply large transactions while they stream); undefined: pgtide's default. */
  readonly streamedApply: boolean | undefined;
  /** pgtide's apply.copyMinRows (insert runs sent as COPY from this length; 0: never); undefined: pgtide's default. */
  readonly copyMinRows: number | undefined;
  /** pgtide's conflicts.detect (false: the plain statements, no detection); undefined: pgtide's default (on). */
  readonly conflictDetect: boolean | undefined;
  /** oltp-detect: also drain a backlog with every table under a custom resolver (policy custom). */
  readonly withResolver: boolean;
}

export const USAGE = `usage: node dist/bench/run.js <scenario|all> [options]

scenarios: initial-copy, bulk, oltp, large-txn, decode, two-way, ddl-lag, oltp-detect, all

options:
  --major N          PostgreSQL major for every cluster (14-18; default 18 or $PGTIDE_PG_MAJOR)
  --only SIDE        run one side only: pgtide or builtin (limits still run)
  --no-limits        skip the limit measurements
  --quick            tiny sizes: a smoke run of the harness, not a benchmark
  --repeat N         run each side N times, alternating which goes first; medians are reported
  --scale N          initial-copy size as a pgbench scale (default 15 = ~300 MB; 50 = ~1 GB)
  --oltp-scale N     pgbench scale of the oltp, two-way and ddl-lag scenarios (default 10)
  --duration S       oltp: seconds of the live run and of the backlog run each; two-way, ddl-lag: of their live run (default 30)
  --rows N           bulk: rows inserted, then updated, then deleted (default 1000000)
  --changes N        large-txn: rows in the single transaction (default 2000000; 10000000 for the headline)
  --decode-changes N decode: changes for the decoder micro-benchmark (default: its own)
  --builtin-binary on|off   built-in subscription binary option (default on)
  --streamed-apply on|off   pgtide apply.streamedApply: large transactions applied while they stream (default: pgtide's own, on)
  --copy-min-rows N         pgtide apply.copyMinRows: insert runs of N+ rows go through COPY, 0 never (default: pgtide's own, 0)
  --conflict-detect on|off  pgtide conflicts.detect: off applies with the plain statements, no conflict detection (default: on)
  --with-resolver           oltp-detect: also drain with every table under a custom resolver (the cost of its round trip per run)
`;

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw.replace(/_/g, ''));
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer, got "${raw}"`);
  return value;
}

function nonNegativeInt(name: string, raw: string): number {
  const value = Number(raw.replace(/_/g, ''));
  if (!Number.isInteger(value) || value < 0) throw new Error(`--${name} must be 0 or a positive integer, got "${raw}"`);
  return value;
}

export function parseOptions(argv: readonly string[]): BenchOptions {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      major: { type: 'string' },
      only: { type: 'string' },
      'no-limits': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      repeat: { type: 'string' },
      scale: { type: 'string' },
      'oltp-scale': { type: 'string' },
      duration: { type: 'string' },
      rows: { type: 'string' },
      changes: { type: 'string' },
      'decode-changes': { type: 'string' },
      'builtin-binary': { type: 'string' },
      'streamed-apply': { type: 'string' },
      'copy-min-rows': { type: 'string' },
      'conflict-detect': { type: 'string' },
      'with-resolver': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help || positionals.length !== 1) throw new Error(USAGE);
  const major = values.major === undefined ? defaultMajor() : Number(values.major);
  if (!SUPPORTED_MAJORS.includes(major as PgMajor)) throw new Error(`--major must be one of ${SUPPORTED_MAJORS.join(', ')}`);
  let sides: readonly Side[] = ['builtin', 'pgtide'];
  if (values.only !== undefined) {
    if (!SIDES.includes(values.only as Side)) throw new Error(`--only must be pgtide or builtin, got "${values.only}"`);
    sides = [values.only as Side];
  }
  const binary = values['builtin-binary'] ?? 'on';
  if (binary !== 'on' && binary !== 'off') throw new Error('--builtin-binary must be on or off');
  const streamed = values['streamed-apply'];
  if (streamed !== undefined && streamed !== 'on' && streamed !== 'off') throw new Error('--streamed-apply must be on or off');
  const detect = values['conflict-detect'];
  if (detect !== undefined && detect !== 'on' && detect !== 'off') throw new Error('--conflict-detect must be on or off');
  const quick = values.quick === true;
  return {
    scenario: positionals[0]!,
    major: major as PgMajor,
    sides,
    limits: values['no-limits'] !== true,
    quick,
    repeat: positiveInt('repeat', values.repeat, 1),
    copyScale: positiveInt('scale', values.scale, quick ? 1 : 15),
    oltpScale: positiveInt('oltp-scale', values['oltp-scale'], quick ? 1 : 10),
    oltpSeconds: positiveInt('duration', values.duration, quick ? 1 : 30),
    oltpClients: 4,
    bulkRows: positiveInt('rows', values.rows, quick ? 20_000 : 1_000_000),
    largeChanges: positiveInt('changes', values.changes, quick ? 50_000 : 2_000_000),
    decodeChanges: values['decode-changes'] === undefined ? (quick ? 50_000 : undefined) : positiveInt('decode-changes', values['decode-changes'], 0),
    copyParallelism: 2,
    builtinBinary: binary === 'on',
    streamedApply: streamed === undefined ? undefined : streamed === 'on',
    copyMinRows: values['copy-min-rows'] === undefined ? undefined : nonNegativeInt('copy-min-rows', values['copy-min-rows']),
    conflictDetect: detect === undefined ? undefined : detect === 'on',
    withResolver: values['with-resolver'] === true,
  };
}
