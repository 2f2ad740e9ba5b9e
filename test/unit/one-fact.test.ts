import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../src/control/config.js';
import { DEFAULT_SPLIT_THRESHOLD } from '../../src/copy/plan.js';

const SRC = fileURLToPath(new URL('../../../src', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? sources(full) : name.endsWith('.ts') ? [full] : [];
  });
}

test('the copy and the config agree on the split threshold default', () => {
  const config = parseConfig({ source: { url: 'postgres://u@127.0.0.1:5432/a' }, target: { url: 'postgres://u@127.0.0.1:5433/b' } });
  assert.equal(DEFAULT_SPLIT_THRESHOLD, config.copy.splitThresholdBytes);
});

test('"table missing on the target" is raised in one place', () => {
  const raisers = sources(SRC).filter((file) => /new PgtideError\(\s*'TABLE_MISSING_ON_TARGET'/.test(readFileSync(file, 'utf8')));
  assert.equal(raisers.length, 1, `raised in ${raisers.map((f) => path.relative(SRC, f)).join(', ')}`);
});

test('slots are dropped, and a subscription\'s state deleted, in one place each', () => {
  const files = sources(SRC);
  const dropping = files.filter((file) => /unsafe\(`SELECT pg_drop_replication_slot\(\$1\)`/.test(readFileSync(file, 'utf8')));
  assert.deepEqual(dropping.map((f) => path.relative(SRC, f)), [path.join('source', 'slots.ts')]);
  const deleting = files.filter((file) => /DELETE FROM pgtide\.subscription/.test(readFileSync(file, 'utf8')));
  assert.deepEqual(deleting.map((f) => path.relative(SRC, f)), [path.join('state', 'state-store.ts')]);
});
