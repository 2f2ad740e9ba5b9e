#!/usr/bin/env node
// Runs the whole test suite once per PostgreSQL major, each with
// PGTIDE_PG_MAJOR set, streaming the runner's output as it comes, and ends
// with one summary line per major and a total `N passed, N failed` line.
// `npm test` runs it for 18 and 14 (the newest and oldest supported source);
// `node scripts/test-majors.mjs 14 15 16 17 18` runs every major.
// Usage: node scripts/test-majors.mjs [major ...]   (after `npm run build`)
import { spawn } from 'node:child_process';

const majors = process.argv.length > 2 ? process.argv.slice(2) : ['14', '15', '16', '17', '18'];

function runSuite(major, first) {
  return new Promise((resolve) => {
    // The short chaos run (test/integration/chaos.test.ts) takes minutes, and the mesh
    // (test/integration/mesh.test.ts) has fixed majors 14, 16 and 18: each once per npm test.
    const env = { ...process.env, PGTIDE_PG_MAJOR: major, ...(first ? {} : { PGTIDE_SKIP_CHAOS: '1' }) };
    const child = spawn(process.execPath, ['scripts/run-tests.mjs'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const tee = (stream, out) => stream.on('data', (chunk) => { output += chunk; out.write(chunk); });
    tee(child.stdout, process.stdout);
    tee(child.stderr, process.stderr);
    child.on('close', (status) => resolve({ status, output }));
  });
}

let passed = 0;
let failed = 0;
const lines = [];
for (const major of majors) {
  console.log(`\n=== PostgreSQL ${major} ===`);
  const run = await runSuite(major, major === majors[0]);
  const count = (label) => Number((run.output.match(new RegExp(`^ℹ ${label} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
  const p = count('pass');
  const f = count('fail') + count('cancelled');
  passed += p;
  failed += f;
  lines.push(`PostgreSQL ${major}: ${p} passed, ${f} failed${run.status !== 0 && f === 0 ? ` (runner exit ${run.status})` : ''}`);
}
console.log('');
for (const line of lines) console.log(line);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || lines.some((l) => l.includes('exit')) ? 1 : 0);
