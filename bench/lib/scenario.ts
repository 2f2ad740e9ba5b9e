/**
 * What a scenario is, and the loop that runs each side (pgtide, built-in) in
 * isolation so that one side failing never hides the other's figures.
 */
import type { PgMajor } from '../../src/harness/cluster.js';
import type { Replicator, ReplicatorSetup, Side } from '../runners/types.js';
import { BuiltinReplicator } from '../runners/builtin.js';
import { PgtideReplicator } from '../runners/pgtide.js';
import type { BenchOptions } from './options.js';
import type { Failure, ScenarioOutcome, Values } from './report.js';
import { Cleanup, errorMessage } from './cleanup.js';
import { MismatchError } from './verify.js';
import { median } from './stats.js';

export interface ScenarioContext {
  readonly major: PgMajor;
  readonly options: BenchOptions;
  readonly log: (message: string) => void;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  run(ctx: ScenarioContext): Promise<ScenarioOutcome>;
}

export interface SideResult {
  readonly values: Values;
  readonly notes?: readonly string[];
}

export interface SidesOutcome {
  readonly values: Partial<Record<Side, Values>>;
  readonly notes: string[];
  readonly failures: Failure[];
}

function toFailure(side: Failure['side'], error: unknown): Failure {
  if (error instanceof MismatchError) return { side, kind: 'mismatch', message: error.message };
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return { side, kind: 'error', message };
}

/**
 * Runs `body` once per side and round, each with its own clean-up stack that
 * always runs. With --repeat, rounds alternate which side goes first (so
 * warm-up and machine drift hit both equally) and each figure is the median.
 */
export async function runSides(ctx: ScenarioContext, body: (side: Side, cleanup: Cleanup, round: number) => Promise<SideResult>): Promise<SidesOutcome> {
  const collected: Partial<Record<Side, Values[]>> = {};
  const notes: string[] = [];
  const failures: Failure[] = [];
  const failed = new Set<Side>();
  for (let round = 0; round < ctx.options.repeat; round++) {
    const order = round % 2 === 0 ? ctx.options.sides : [...ctx.options.sides].reverse();
    for (const side of order) {
      if (failed.has(side)) continue;
      ctx.log(`${side}${ctx.options.repeat > 1 ? ` (round ${round + 1}/${ctx.options.repeat})` : ''}: starting`);
      const cleanup = new Cleanup();
      try {
        const result = await body(side, cleanup, round);
        (collected[side] ??= []).push(result.values);
        for (const note of result.notes ?? []) notes.push(`${side}: ${note}`);
        ctx.log(`${side}: done`);
      } catch (error) {
        failed.add(side);
        const failure = toFailure(side, error);
        failures.push(failure);
        ctx.log(`${side}: FAILED (${failure.kind}): ${errorMessage(error)}`);
      } finally {
        await cleanup.runAll(ctx.log);
      }
    }
  }
  const values: Partial<Record<Side, Values>> = {};
  for (const [side, rounds] of Object.entries(collected) as [Side, Values[]][]) {
    const keys = new Set(rounds.flatMap((r) => Object.keys(r)));
    values[side] = Object.fromEntries([...keys].map((key) => [key, median(rounds.map((r) => r[key]).filter((v): v is number => v !== undefined))]));
  }
  return { values, notes, failures };
}

/** Runs the limit measurements with their own clean-up; a failure is reported, not fatal. */
export async function runLimit(ctx: ScenarioContext, body: (cleanup: Cleanup) => Promise<SideResult>): Promise<{ values: Values | undefined; notes: string[]; failures: Failure[] }> {
  if (!ctx.options.limits) return { values: undefined, notes: ['limits skipped (--no-limits)'], failures: [] };
  ctx.log('limit: starting');
  const cleanup = new Cleanup();
  try {
    const result = await body(cleanup);
    ctx.log('limit: done');
    return { values: result.values, notes: (result.notes ?? []).map((n) => `limit: ${n}`), failures: [] };
  } catch (error) {
    ctx.log(`limit: FAILED: ${errorMessage(error)}`);
    return { values: undefined, notes: [], failures: [toFailure('limit', error)] };
  } finally {
    await cleanup.runAll(ctx.log);
  }
}

/** Builds the side's replicator and registers its stop() (drop subscription / kill child) for clean-up. */
export function createReplicator(side: Side, setup: ReplicatorSetup, options: BenchOptions, cleanup: Cleanup): Replicator {
  const replicator: Replicator = side === 'builtin' ? new BuiltinReplicator(setup, { binary: options.builtinBinary }) : new PgtideReplicator(setup, { streamedApply: options.streamedApply, copyMinRows: options.copyMinRows, conflictDetect: options.conflictDetect });
  cleanup.add(`stop ${side}`, () => replicator.stop());
  return replicator;
}
