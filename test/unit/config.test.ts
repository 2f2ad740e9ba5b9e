import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, slotName, publicationName, publicationNames, originName } from '../../src/control/config.js';
import { ConfigError, redact } from '../../src/core/errors.js';
import { parseQualifiedName } from '../../src/core/sql.js';

const base = { source: { url: 'postgres://u:s3cret@127.0.0.1:5432/a' }, target: { url: 'postgres://u:s3cret@127.0.0.1:5433/b' } };

test('defaults fill in and names derive from `name`', () => {
  const config = parseConfig(base);
  assert.equal(config.name, 'pgtide');
  assert.equal(config.copy.parallelism, 2);
  assert.equal(config.memoryCap, 64 * 1024 * 1024);
  assert.equal(slotName(config), 'pgtide_slot');
  assert.equal(publicationName(config), 'pgtide_pub');
  assert.equal(originName(config, 16384), 'pgtide_pgtide_16384');
});

test('sizes accept units', () => {
  assert.equal(parseConfig({ ...base, memoryCap: '256kB' }).memoryCap, 256 * 1024);
  assert.equal(parseConfig({ ...base, memoryCap: '1.5 GiB' }).memoryCap, 1.5 * 1024 ** 3);
  assert.throws(() => parseConfig({ ...base, memoryCap: 'lots' }), /memoryCap: "lots" is not a size/);
});

test('errors name every bad field and the fix, never the password', () => {
  let error: unknown;
  try {
    parseConfig({ source: { url: 'mysql://u:s3cret@h/d' }, copy: { parallelism: 0 }, slott: 'x' });
  } catch (e) { error = e; }
  assert.ok(error instanceof ConfigError);
  assert.equal(error.code, 'CONFIG_INVALID');
  assert.match(error.message, /source\.url: connection string: is a URL of another kind; a connection URL starts with postgres:\/\//);
  assert.match(error.message, /target: is required|target: Invalid input/);
  assert.match(error.message, /copy\.parallelism/);
  assert.match(error.message, /unknown field\(s\) "slott"/);
  assert.doesNotMatch(error.message, /s3cret/);
});

test('environment variables expand, and a missing one is named', () => {
  process.env.PGTIDE_TEST_URL = 'postgres://u:pw@127.0.0.1/x';
  assert.equal(parseConfig({ ...base, source: { url: '${PGTIDE_TEST_URL}' } }).source.url, 'postgres://u:pw@127.0.0.1/x');
  assert.throws(() => parseConfig({ ...base, source: { url: '${PGTIDE_NOT_SET_ANYWHERE}' } }), /source\.url uses \$\{PGTIDE_NOT_SET_ANYWHERE\}.*not set/);
});

test('qualified names: quoting, case folding, unicode', () => {
  assert.deepEqual(parseQualifiedName('Orders'), { schema: 'public', name: 'orders' });
  assert.deepEqual(parseQualifiedName('sales.Orders'), { schema: 'sales', name: 'orders' });
  assert.deepEqual(parseQualifiedName('"Sales"."Order Items"'), { schema: 'Sales', name: 'Order Items' });
  assert.deepEqual(parseQualifiedName('"a.b"."say ""hi"""'), { schema: 'a.b', name: 'say "hi"' });
  assert.deepEqual(parseQualifiedName('"Ünïcødé"."表"'), { schema: 'Ünïcødé', name: '表' });
  assert.equal(parseQualifiedName('a.b.c'), undefined);
  assert.equal(parseQualifiedName('"unterminated'), undefined);
  assert.equal(parseQualifiedName('has space'), undefined);
  assert.throws(() => parseConfig({ ...base, tables: ['ok', 'bad name'] }), /tables\.1: "bad name" is not a table name/);
});

test('redact hides passwords in URLs and key=value strings', () => {
  assert.equal(redact('postgres://user:hunter2@host/db'), 'postgres://user:***@host/db');
  assert.equal(redact('host=x password=hunter2 user=y'), 'host=x password=*** user=y');
});

test('publication: a name or a list; publicationNames keeps config order without repeats', () => {
  assert.deepEqual(publicationNames(parseConfig(base)), ['pgtide_pub']);
  assert.deepEqual(publicationNames(parseConfig({ ...base, publication: 'shop' })), ['shop']);
  const two = parseConfig({ ...base, publication: ['shop', 'audit', 'shop'] });
  assert.deepEqual(publicationNames(two), ['shop', 'audit']);
  assert.equal(publicationName(two), 'shop,audit');
  assert.throws(() => parseConfig({ ...base, publication: [] }), /publication/);
  assert.throws(() => parseConfig({ ...base, publication: ['ok', 'Bad Name'] }), /publication\.1/);
  assert.equal(parseConfig(base).copy.truncateFirst, false);
});
