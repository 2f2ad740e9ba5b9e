import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyInsertStatement, keyedUpdateStatements, insertStatement, updateByKeyStatement, deleteByKeyStatement, updateFullStatement, deleteFullStatement, truncateStatement } from '../../src/sinks/postgres/statements.js';
import { RelationCache } from '../../src/changes/relation-cache.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import type { Tuple } from '../../src/protocol/messages.js';
import { textArrayLiteral } from '../../src/core/sql.js';

const t = (value: string) => ({ kind: 'text' as const, value });
const NULL = { kind: 'null' as const };
const U = { kind: 'unchanged' as const };

function table(identity: 'default' | 'full'): TargetTable {
  const cache = new RelationCache();
  const relation = cache.update({
    tag: 'relation', xid: undefined, relationOid: 42, schema: 'My Schema', name: 'Tab"le', replicaIdentity: identity,
    columns: [
      { name: 'id', isKey: identity === 'default', typeOid: 23, typeMod: -1 },
      { name: 'Body', isKey: false, typeOid: 25, typeMod: -1 },
      { name: 'doc', isKey: false, typeOid: 114, typeMod: -1 },
    ],
  });
  return { relation, columns: [
    { name: 'id', sqlType: 'integer', compareAsText: false, identityAlways: false },
    { name: 'Body', sqlType: 'text', compareAsText: false, identityAlways: false },
    { name: 'doc', sqlType: 'json', compareAsText: true, identityAlways: false },
  ], facts: { replicaTriggers: false, keyUnique: true, keyIndexExact: true } };
}

test('text array literals quote, escape and keep NULL distinct from "NULL"', () => {
  assert.equal(textArrayLiteral(['a', null, 'NULL', 'with "quote"', 'back\\slash', '', 'comma,brace}']), '{"a",NULL,"NULL","with \\"quote\\"","back\\\\slash","","comma,brace}"}');
  assert.equal(textArrayLiteral([]), '{}');
});

test('insert: one statement, one text[] per column, identity values kept', () => {
  const rows: Tuple[] = [[t('1'), t('x'), NULL], [t('2'), NULL, t('{"a":1}')]];
  const s = insertStatement(table('default'), rows);
  assert.equal(s.text, 'INSERT INTO "My Schema"."Tab""le" ("id", "Body", "doc") OVERRIDING SYSTEM VALUE SELECT v.c0::integer, v.c1::text, v.c2::json FROM unnest($1::text[], $2::text[], $3::text[]) AS v(c0, c1, c2)');
  assert.deepEqual(s.params, ['{"1","2"}', '{"x",NULL}', '{NULL,"{\\"a\\":1}"}']);
});

test('COPY text format: tab, newline, CR and backslash escaped, NULL as \\N, the text "\\N" kept distinct', () => {
  const rows: Tuple[] = [
    [t('1'), t('a\tb\nc\rd\\e'), NULL],
    [t('2'), t('\\N'), t('')],
    [t('3'), t('ünï ✓'), t('{"k":"v"}')],
  ];
  const c = copyInsertStatement(table('default'), rows);
  assert.equal(c.text, 'COPY "My Schema"."Tab""le" ("id", "Body", "doc") FROM STDIN');
  assert.equal(c.rows, 3);
  assert.deepEqual(c.chunks, ['1\ta\\tb\\nc\\rd\\\\e\t\\N\n2\t\\\\N\t\n3\tünï ✓\t{"k":"v"}\n']);
});

test('COPY data is cut into chunks at row boundaries', () => {
  const wide = 'x'.repeat(300_000);
  const rows: Tuple[] = Array.from({ length: 8 }, (_, i) => [t(String(i)), t(wide), NULL]);
  const c = copyInsertStatement(table('default'), rows);
  assert.ok(c.chunks.length >= 2, `chunks: ${c.chunks.length}`);
  for (const chunk of c.chunks) assert.ok(chunk.endsWith('\n'));
  assert.equal(c.chunks.join('').split('\n').length - 1, 8);
});

test('update by key writes the key from the key array and the given columns, and joins on the key', () => {
  const s = updateByKeyStatement(table('default'), [1], [{ key: ['7'], newTuple: [t('7'), t('new'), U] }]);
  assert.equal(s.text, 'UPDATE "My Schema"."Tab""le" AS t SET "id" = v.c0::integer, "Body" = v.c1::text FROM unnest($1::text[], $2::text[]) AS v(c0, c1) WHERE t."id" = v.c0::integer');
  assert.deepEqual(s.params, ['{"7"}', '{"new"}']);
  // A changed key is in the given columns: assigned once, from the new values.
  const changed = updateByKeyStatement(table('default'), [0, 1], [{ key: ['7'], newTuple: [t('8'), t('new'), U] }]);
  assert.equal(changed.text, 'UPDATE "My Schema"."Tab""le" AS t SET "id" = v.c1::integer, "Body" = v.c2::text FROM unnest($1::text[], $2::text[], $3::text[]) AS v(c0, c1, c2) WHERE t."id" = v.c0::integer');
  // A GENERATED ALWAYS identity key may not be assigned: left out.
  const base = table('default');
  const identity: TargetTable = { ...base, columns: base.columns.map((c, i) => (i === 0 ? { ...c, identityAlways: true } : c)) };
  assert.match(updateByKeyStatement(identity, [1], [{ key: ['7'], newTuple: [t('7'), t('new'), U] }]).text, / SET "Body" = v\.c1::text FROM /);
});

test('delete by key', () => {
  const s = deleteByKeyStatement(table('default'), [['1'], ['2']]);
  assert.equal(s.text, 'DELETE FROM "My Schema"."Tab""le" AS t USING unnest($1::text[]) AS v(c0) WHERE t."id" = v.c0::integer');
  assert.deepEqual(s.params, ['{"1","2"}']);
});

test('FULL identity touches one row, matches NULLs, compares json as text, skips unchanged TOAST', () => {
  const old: Tuple = [t('1'), NULL, t('{}')];
  const d = deleteFullStatement(table('full'), old);
  assert.equal(d.text, 'DELETE FROM "My Schema"."Tab""le" WHERE (tableoid, ctid) = (SELECT f.tableoid, f.ctid FROM "My Schema"."Tab""le" AS f WHERE f."id" IS NOT DISTINCT FROM $1::text::integer AND f."Body" IS NOT DISTINCT FROM $2::text::text AND f."doc"::text IS NOT DISTINCT FROM $3 LIMIT 1)');
  assert.deepEqual(d.params, ['1', null, '{}']);
  // The whole new row but unchanged TOAST, as the built-in worker writes it.
  const u = updateFullStatement(table('full'), old, [t('1'), t('b'), U]);
  assert.match(u.text, /^UPDATE "My Schema"."Tab""le" SET "id" = \$1::text::integer, "Body" = \$2::text::text WHERE \(tableoid, ctid\) = \(SELECT f.tableoid, f.ctid .* LIMIT 1\)$/);
  assert.deepEqual(u.params, ['1', 'b', '1', null, '{}']);
  const same = updateFullStatement(table('full'), old, [t('1'), NULL, t('{}')]);
  assert.match(same.text, /^UPDATE .* SET "id" = \$1::text::integer, "Body" = \$2::text::text, "doc" = \$3::text::json WHERE/);
  const onlyToast = updateFullStatement(table('full'), old, [U, U, U]);
  assert.match(onlyToast.text, /^SELECT 1 FROM/);
});

test('truncate never cascades beyond the listed tables', () => {
  assert.deepEqual(truncateStatement(['"a"."b"', '"c"."d"'], true), { text: 'TRUNCATE "a"."b", "c"."d" RESTART IDENTITY', params: [] });
  assert.equal(truncateStatement(['"a"."b"'], false).text, 'TRUNCATE "a"."b"');
});

test('a GENERATED ALWAYS identity column that must change moves the row, keeping unchanged TOAST', () => {
  const base = table('default');
  const withIdentity: TargetTable = { ...base, columns: base.columns.map((c, i) => (i === 0 ? { ...c, identityAlways: true } : c)) };
  const [only, ...rest] = keyedUpdateStatements(withIdentity, [0, 1], [{ key: ['1'], newTuple: [t('9'), t('x'), U] }]);
  assert.equal(rest.length, 0);
  assert.equal(only!.statement.text, 'WITH old AS (DELETE FROM "My Schema"."Tab""le" AS t WHERE t."id" = $1::text::integer RETURNING t.*) INSERT INTO "My Schema"."Tab""le" ("id", "Body", "doc") OVERRIDING SYSTEM VALUE SELECT $2::text::integer, $3::text::text, old."doc" FROM old');
  assert.deepEqual(only!.statement.params, ['1', '9', 'x']);
  // Without identity columns in SET, one set-based UPDATE serves the whole run.
  assert.equal(keyedUpdateStatements(base, [1], [{ key: ['1'], newTuple: [t('1'), t('x'), U] }, { key: ['2'], newTuple: [t('2'), t('y'), U] }]).length, 1);
});

test('a table with no columns: rows are inserted by count, COPY takes no column list', () => {
  const cache = new RelationCache();
  const relation = cache.update({ tag: 'relation', xid: undefined, relationOid: 43, schema: 'public', name: 't0', replicaIdentity: 'full', columns: [] });
  const zero: TargetTable = { relation, columns: [], facts: { replicaTriggers: false, keyUnique: false, keyIndexExact: false } };
  assert.deepEqual(insertStatement(zero, [[], [], []]), { text: 'INSERT INTO "public"."t0" SELECT FROM generate_series(1, $1::text::int)', params: ['3'] });
  const c = copyInsertStatement(zero, [[], []]);
  assert.equal(c.text, 'COPY "public"."t0" FROM STDIN');
  assert.deepEqual(c.chunks, ['\n\n']);
  assert.equal(deleteFullStatement(zero, []).params.length, 0);
});

test('keyed statements check their row count only where the target has no unique index on the key', () => {
  const base = table('default');
  const unguarded = deleteByKeyStatement(base, [['1']]);
  assert.doesNotMatch(unguarded.text, /RETURNING/);
  const noUnique: TargetTable = { ...base, facts: { replicaTriggers: false, keyUnique: false, keyIndexExact: false } };
  const d = deleteByKeyStatement(noUnique, [['1'], ['2']]);
  assert.match(d.text, /^WITH w AS \(DELETE FROM "My Schema"."Tab""le" AS t USING unnest\(\$1::text\[\]\) AS v\(c0\) WHERE t."id" = v.c0::integer RETURNING 1\) SELECT 1 FROM w WHERE CASE WHEN \(SELECT count\(\*\) FROM w\) > cardinality\(\$1::text\[\]\) THEN \('pgtide: DELETE of "My Schema"."Tab""le" matched more target rows/);
  assert.deepEqual(d.params, ['{"1","2"}']);
  const u = updateByKeyStatement(noUnique, [1], [{ key: ['7'], newTuple: [t('7'), t('new'), U] }]);
  assert.match(u.text, /^WITH w AS \(UPDATE .* RETURNING 1\) SELECT 1 FROM w WHERE CASE WHEN/);
});
