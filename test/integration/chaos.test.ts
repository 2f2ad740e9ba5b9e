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

// `npm test` runs the suite once per major (18, then 14); the chaos run takes 5-7 minutes on two
// cores, so it runs in the first pass only (scripts/test-majors.mjs sets PGTIDE_SKIP_CHAOS for
// the others) to keep .ci/run well inside its 30 minutes. `npm run chaos -- --major 14` runs it on 14.
const SKIP = process.env.PGTIDE_SKIP_CHAOS ? 'the short chaos run already ran in the first major of this npm test' : false;

describe('fault injection (short chaos run)', { timeout: 1_800_000, skip: SKIP }, () => {
  // Something the run leaves behind keeps this file's process alive, busy, after the test ended
  // (seen on 2026-12-06, cause not found yet: not the TCP proxy, not pgtide, which are gone), and
  // the test runner would wait for it for ever. Exit once the results are reported; the exit
  // code is the runner's (process.exitCode is 1 after a failure).
  after(() => { setTimeout(() => process.exit(), 5_000).unref(); });

  it(`${FAULTS} random faults under load converge with no loss and no duplicate (seed ${SEED})`, async () => {
    // Unique swaps included (issue 10 case 4 is fixed); PGTIDE_CHAOS_SWAPS=0 leaves them out.
    const summary = await runChaos({ faults: FAULTS, seed: SEED, swaps: process.env.PGTIDE_CHAOS_SWAPS !== '0', log: () => {} });
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
