/**
 * The short, seeded form of the fault-injection suite (`npm run chaos` runs
 * the long one): about 20 faults under load through TCP proxies, then every
 * table and sequence compared. Replay a failure with
 * `npm run chaos -- --faults 20 --seed <seed>`.
 *
 * The run goes in a child process (`test/chaos/main.ts`, which exits when it
 * has printed its summary) rather than in this file's process: after some runs
 * something the harness leaves behind spins on the microtask queue (seen on
 * 2026-12-06, cause not found; pgtide runs as a child of the suite and is not
 * it), which starves timers, so neither the runner nor an exit timer could end
 * this process.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SEED = Number(process.env.PGTIDE_CHAOS_SEED ?? 20261206);
const FAULTS = Number(process.env.PGTIDE_CHAOS_FAULTS ?? 20);
const MAIN = fileURLToPath(new URL('../chaos/main.js', import.meta.url));

// `npm test` runs the suite once per major (18, then 14); the chaos run takes 5-7 minutes on two
// cores, so it runs in the first pass only (scripts/test-majors.mjs sets PGTIDE_SKIP_CHAOS for
// the others) to keep .ci/run well inside its 30 minutes. `npm run chaos -- --major 14` runs it on 14.
const SKIP = process.env.PGTIDE_SKIP_CHAOS ? 'the short chaos run already ran in the first major of this npm test' : false;

function runChaosChild(args: readonly string[], timeoutMs: number): Promise<{ readonly code: number | null; readonly output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    // SIGTERM: the suite's exit handlers stop pgtide and the clusters it started.
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 60_000).unref();
    }, timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, output }); });
  });
}

describe('fault injection (short chaos run)', { timeout: 1_800_000, skip: SKIP }, () => {
  it(`${FAULTS} random faults under load converge with no loss and no duplicate (seed ${SEED})`, async () => {
    // Unique swaps included (issue 10 case 4 is fixed); PGTIDE_CHAOS_SWAPS=0 leaves them out.
    const args = ['--faults', String(FAULTS), '--seed', String(SEED), ...(process.env.PGTIDE_CHAOS_SWAPS === '0' ? ['--no-swaps'] : [])];
    const { code, output } = await runChaosChild(args, 1_700_000);
    const summary = output.slice(output.lastIndexOf('chaos summary:'));
    process.stderr.write(`${summary}\n`);
    assert.equal(code, 0, `the chaos run failed:\n${output.slice(-4000)}`);
    assert.match(summary, /^chaos summary: PASS/);
    const faults = Number(/faults: (\d+)/.exec(summary)?.[1]);
    assert.equal(faults, FAULTS, 'every fault was injected');
    assert.match(summary, /losses: 0, duplicates: 0/);
    const rows = Number(/rows compared: (\d+)/.exec(summary)?.[1]);
    assert.ok(rows > 100_000, `the tables were compared (${rows} rows)`);
  });
});
