#!/usr/bin/env node
// Runs the whole test suite once per supported PostgreSQL major (14 to 18),
// each with PGTIDE_PG_MAJOR set, and prints one summary line per major and a
// total. Not part of .ci/run (which tests the default major, 18): five full
// runs take about ten minutes on two cores.
// Usage: node scripts/test-majors.mjs [major ...]   (after `npm run build`)
import { spawnSync } from 'node:child_process';

const majors = process.argv.length > 2 ? process.argv.slice(2) : ['14', '15', '16', '17', '18'];
let passed = 0;
let failed = 0;
const lines = [];
for (const major of majors) {
  const run = spawnSync(process.execPath, ['scripts/run-tests.mjs'], { env: { ...process.env, PGTIDE_PG_MAJOR: major }, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const output = `${run.stdout}${run.stderr}`;
  const count = (label) => Number((output.match(new RegExp(`^ℹ ${label} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
  const p = count('pass');
  const f = count('fail');
  passed += p;
  failed += f;
  if (run.status !== 0) process.stdout.write(output.split('\n').filter((l) => /✖/.test(l)).join('\n') + '\n');
  lines.push(`PostgreSQL ${major}: ${p} passed, ${f} failed${run.status !== 0 && f === 0 ? ` (exit ${run.status})` : ''}`);
  console.log(lines.at(-1));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || lines.some((l) => l.includes('exit')) ? 1 : 0);
