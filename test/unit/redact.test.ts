import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { redact } from '../../src/core/errors.js';
import { loadConfigFile, parseConfig } from '../../src/control/config.js';
import { TestScope, runCli, writeConfigFile } from '../support/replication.js';

/**
 * No 4-character piece of the password may remain, not only the whole of it; `context` is the
 * input with the password taken out, whose own text (" password=", the host) may show.
 */
function assertNoPiece(text: string, password: string, context = ''): void {
  assert.ok(!text.includes(password), `"${text}" shows the password`);
  for (let i = 0; i + 4 <= password.length; i++) {
    const piece = password.slice(i, i + 4);
    if (context.includes(piece)) continue;
    assert.ok(!text.includes(piece), `"${text}" still shows part of the password ("${piece}")`);
  }
}

test('redact: URL passwords with raw @, :, quotes and percent-encoding', () => {
  const cases: readonly [string, string][] = [
    ['postgres://u:p@ss:Leak1@127.0.0.1:5432/db', 'p@ss:Leak1'],
    ['postgresql://u:p@ss:Leak1@@db.example.com/db?sslmode=require', 'p@ss:Leak1@'],
    ["postgres://u:it's\"q@host/db", "it's\"q"],
    ['postgres://u:p%40ss%3AW0rd%2F@host:5432/db', 'p%40ss%3AW0rd%2F'],
    ['postgres://:onlyPassw0rd@host/db', 'onlyPassw0rd'],
  ];
  for (const [url, password] of cases) {
    const out = redact(`could not connect with ${url} (timeout)`);
    assertNoPiece(out, password, url.replace(password, ''));
    assert.match(out, /\*\*\*/);
    assert.match(out, /\(timeout\)$/, `the text after the URL stays: ${out}`);
  }
});

test('redact: a URL cut off inside its password (a YAML error excerpt) hides the rest of the authority', () => {
  const out = redact('  url: postgres://u:p@ss:Leak1…\n       ^');
  assertNoPiece(out, 'p@ss:Leak1');
  assert.match(out, /postgres:\/\/u:\*\*\*/);
});

test('redact: key=value passwords, quoted with spaces and escapes', () => {
  const cases: readonly [string, string][] = [
    ["host=h password='my secret pass' user=u", 'my secret pass'],
    ["host=h password = 'it\\'s @ secret' user=u", "it\\'s @ secret"],
    ['host=h password=p@ss:Leak1/x user=u', 'p@ss:Leak1/x'],
  ];
  for (const [text, password] of cases) {
    const out = redact(text);
    assertNoPiece(out, password, text.replace(password, ''));
    assert.match(out, /user=u$/, `the parameter after the password stays: ${out}`);
  }
});

test('redact: the literal passwords of the configured connections are hidden wherever they appear', () => {
  parseConfig({
    source: { url: 'postgres://u:Src-S3cret%2Fx@127.0.0.1:5432/a' },
    target: { url: "host=127.0.0.1 dbname=b password='Tgt S3cret!'" },
  });
  const out = redact('server said: password authentication failed; we sent Src-S3cret/x and Tgt S3cret! and Src-S3cret%2Fx');
  assert.doesNotMatch(out, /S3cret/);
});

test('a YAML error next to a password with a raw @ does not show any of it', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-redact-'));
  try {
    const file = path.join(dir, 'pgtide.yaml');
    writeFileSync(file, 'source:\n  url: postgres://u:p@ss:Leak1@127.0.0.1:5432/db  : x: y\ntarget:\n  url: postgres://u:x@h/d\n');
    let message = '';
    try { loadConfigFile(file); } catch (error) { message = (error as Error).message; }
    assert.match(message, /not valid YAML/);
    assertNoPiece(message, 'p@ss:Leak1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the CLI, given the issue\'s YAML error next to a raw-@ password, prints none of the password', async () => {
  const scope = new TestScope();
  try {
    const file = writeConfigFile(scope, 'source:\n  url: postgres://u:p@ss:Leak1@127.0.0.1:5432/db  : x: y\ntarget:\n  url: postgres://u:x@h/d\n');
    const result = await runCli(scope, ['status', '--config', file], { timeoutMs: 30_000 });
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /error \[CONFIG_INVALID\]: .*not valid YAML/);
    assertNoPiece(result.stderr + result.stdout, 'p@ss:Leak1');
  } finally {
    await scope.cleanup();
  }
});
