import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../../scripts/check-layers.mjs', import.meta.url));
const REPO = fileURLToPath(new URL('../../..', import.meta.url));

/** Writes `files` (path under src/ → text) into a fresh tree and runs the check on it. */
function check(files: Record<string, string>): { readonly status: number | null; readonly output: string } {
  const root = mkdtempSync(path.join(tmpdir(), 'pgtide-layers-'));
  try {
    for (const [file, text] of Object.entries(files)) {
      const full = path.join(root, 'src', file);
      mkdirSync(path.dirname(full), { recursive: true });
      writeFileSync(full, text);
    }
    const run = spawnSync(process.execPath, [SCRIPT, '--root', root], { encoding: 'utf8' });
    return { status: run.status, output: run.stdout + run.stderr };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

test('the tree as committed keeps the import rules', () => {
  const run = spawnSync(process.execPath, [SCRIPT, '--root', REPO], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stdout + run.stderr);
});

test('core importing upstairs fails, naming the rule and the import', () => {
  const { status, output } = check({
    'core/lsn.ts': `import type { PgtideConfig } from '../control/config.js';\nexport type Lsn = bigint;\n`,
    'control/config.ts': `export interface PgtideConfig { readonly name: string }\n`,
  });
  assert.equal(status, 1);
  assert.match(output, /core imports nothing of pgtide/);
  assert.match(output, /src\/core\/lsn\.ts:1 imports src\/control\/config\.ts/);
});

test('a flow folder importing control fails, a multi-line and a dynamic import too', () => {
  const { status, output } = check({
    'sinks/postgres/writer.ts': `import {\n  Engine,\n} from '../../control/engine.js';\nexport const x = Engine;\n`,
    'protocol/decoder.ts': `export async function f() { return import('../changes/change.js'); }\n`,
    'changes/change.ts': `export const c = 1;\n`,
    'control/engine.ts': `export class Engine {}\n`,
  });
  assert.equal(status, 1);
  assert.match(output, /src\/sinks\/postgres\/writer\.ts:1 imports src\/control\/engine\.ts/);
  assert.match(output, /no flow folder .* imports control or cli/);
  assert.match(output, /only cli imports control\/engine/);
  assert.match(output, /src\/protocol\/decoder\.ts:1 imports src\/changes\/change\.ts/);
  assert.match(output, /protocol imports core only/);
});

test('control importing control/engine fails; cli importing it passes', () => {
  const bad = check({ 'control/status.ts': `import { Engine } from './engine.js';\n`, 'control/engine.ts': `export class Engine {}\n` });
  assert.equal(bad.status, 1);
  assert.match(bad.output, /only cli imports control\/engine/);
  const good = check({ 'cli/main.ts': `import { Engine } from '../control/engine.js';\n`, 'control/engine.ts': `export class Engine {}\n` });
  assert.equal(good.status, 0, good.output);
});

test('a file in a folder with no floor fails', () => {
  const { status, output } = check({ 'target/state.ts': `export const s = 1;\n` });
  assert.equal(status, 1);
  assert.match(output, /src\/target\/state\.ts/);
});
