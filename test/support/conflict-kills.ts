/**
 * kill -9 while conflicts are being resolved: each conflict must be logged
 * (and resolved) exactly once, since the log rows commit in the batch's
 * transaction with the applied rows and the replication origin's progress.
 * The tests in conflicts*.test.ts each bring their own workload and
 * subscription; the kill rounds and the exactly-once checks are the same.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type postgres from 'postgres';
import { startCli, waitFor, type CliProcess, type TestScope } from './replication.js';

export interface ConflictKillRun {
  /** The target, where pgtide.conflict_log is. */
  readonly dst: postgres.Sql;
  /** The CLI config of the subscription under test. */
  readonly file: string;
  readonly subscription: string;
  /** How many conflicts the workload makes, each on its own key. */
  readonly total: number;
}

/** Conflicts logged so far for the run's subscription. */
export async function loggedConflicts(run: Pick<ConflictKillRun, 'dst' | 'subscription'>): Promise<number> {
  const [row] = await run.dst.unsafe<{ n: string }[]>(`SELECT count(*)::text AS n FROM pgtide.conflict_log WHERE subscription = $1`, [run.subscription]);
  return Number(row!.n);
}

/** Fails the wait as soon as the CLI exits on its own. */
export const cliExited = (cli: CliProcess) => (): string | undefined =>
  (cli.exitCode !== undefined ? `pgtide exited (${cli.exitCode}): ${cli.stderrTail()}` : undefined);

/**
 * The CLI's first start creates the subscription's slot, so that the workload
 * written next is streamed (not copied); killed as soon as it streams.
 */
export async function slotOnly(scope: TestScope, file: string): Promise<void> {
  const cli = startCli(scope, ['start', '--config', file]);
  await cli.waitForStderr(/streaming started/, 120_000);
  cli.kill('SIGKILL');
  await cli.exited;
}

/**
 * Up to four rounds: start the CLI, kill -9 it as soon as this process logged
 * a conflict (so further batches are in flight), until every conflict is
 * logged. Asserts that at least one kill fell in the middle.
 */
export async function killWhileLogging(scope: TestScope, run: ConflictKillRun): Promise<void> {
  const kills: number[] = [];
  for (let round = 0; round < 4; round++) {
    const before = await loggedConflicts(run);
    if (before >= run.total) break;
    const cli = startCli(scope, ['start', '--config', run.file]);
    await waitFor('conflicts logged by this process', async () => ((await loggedConflicts(run)) > before ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 5, failFast: cliExited(cli) });
    cli.kill('SIGKILL');
    await cli.exited;
    kills.push(await loggedConflicts(run));
    await sleep(50);
  }
  assert.ok(kills.some((n) => n > 0 && n < run.total), `at least one kill fell while conflicts were still being resolved (logged at each kill: ${kills.join(', ')})`);
}

/**
 * Starts the CLI once more, lets `caughtUp` wait until it applied everything,
 * stops it, and asserts every conflict logged once: `total` rows, no key twice.
 */
export async function finishLoggedOnce(scope: TestScope, run: ConflictKillRun, caughtUp: (cli: CliProcess) => Promise<void>): Promise<void> {
  const cli = startCli(scope, ['start', '--config', run.file]);
  await caughtUp(cli);
  cli.kill('SIGTERM');
  await cli.exited;
  assert.equal(await loggedConflicts(run), run.total, 'every conflict is logged once');
  const duplicates = await run.dst.unsafe(`SELECT key, count(*) FROM pgtide.conflict_log WHERE subscription = $1 GROUP BY key HAVING count(*) > 1`, [run.subscription]);
  assert.equal(duplicates.length, 0, `no conflict logged twice: ${JSON.stringify([...duplicates])}`);
}
