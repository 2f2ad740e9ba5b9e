/**
 * The short, seeded form of the fault-injection suite (`npm run chaos` runs
 * the long one): about 20 faults under load through TCP proxies, then every
 * table and sequence compared. Replay a failure with
 * `npm run chaos -- --faults 20 --seed <seed>`.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos, formatSummary } from '../chaos/suite.js';

const SEED = Number(process.env.PGTIDE_CHAOS_SEED ?? 20261206);
const FAULTS = Number(process.env.PGTIDE_CHAOS_FAULTS ?? 20);

describe('fault injection (short chaos run)', { timeout: 1_800_000 }, () => {
  // Something the run leaves behind keeps this file's process alive, busy, after the test ended
  // (seen on 2026-12-06, cause not found yet: not the TCP proxy, not pgtide, which are gone), and
  // the test runner would wait for it for ever. Exit once the results are reported; the exit
  // code is the runner's (process.exitCode is 1 after a failure).
  after(() => { setTimeout(() => process.exit(), 5_000).unref(); });

  it(`${FAULTS} random faults under load converge with no loss and no duplicate (seed ${SEED})`, async () => {
    // The unique-swap step stays out until issue 10 case 4 (a crash loop on unique swaps with
    // netEffect) is fixed on main; `npm run chaos` includes it unless --no-swaps.
    const summary = await runChaos({ faults: FAULTS, seed: SEED, swaps: process.env.PGTIDE_CHAOS_SWAPS === '1', log: () => {} });
    process.stderr.write(`${formatSummary(summary)}\n`);
    assert.ok(summary.ok, formatSummary(summary));
    assert.equal(summary.recoveries, Object.values(summary.faults).reduce((a, b) => a + b, 0) - countCopyFaults(summary.faults) + 2, 'one recovery per fault, plus the copy and the end');
    assert.equal(summary.comparison?.losses, 0);
    assert.equal(summary.comparison?.duplicates, 0);
    assert.ok((summary.comparison?.rows ?? 0) > 100_000, 'the tables were compared');
  });
});

function countCopyFaults(faults: Readonly<Record<string, number>>): number {
  return (faults['kill9-copy'] ?? 0) + (faults['sigterm-copy'] ?? 0);
}
