/**
 * `pgtide schema copy|diff` and `schema.bootstrap`: the target's schema made
 * from the source's catalogs. The target is always PostgreSQL 18 and the source
 * the suite's major, so `PGTIDE_PG_MAJOR=14` runs the 14 → 18 case. One cluster
 * pair, one database per case.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TestScope, startPair, databasePair, startEngine, waitForCatchUp, assertTablesEqual, texts, writeConfigFile, cliConfig, runCli,
  configInput, capturingLogger, withTimeout, type Pair,
} from '../support/replication.js';
import { parseConfig } from '../../src/control/config.js';
import { SALES, CUSTOMER, ITEMS, BOOKING, NOTES, EVENTS, TABLES, SOURCE_DDL, insertRows, streamAndCompare } from '../support/schema-fixture.js';

describe('schema bootstrap (schema copy, schema diff, schema.bootstrap)', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;

  before(async () => {
    pair = await startPair(scope, { name: 'schema', targetMajor: 18 });
  });
  after(() => scope.cleanup());

  it('copies every object kind to an empty target; diff then exits 0; rows replicate into it', async () => {
    const p = await databasePair(scope, pair, 'full_copy');
    await p.src.unsafe(SOURCE_DDL);
    // PostgreSQL 18's virtual generated columns (copied only into 18: this suite's target).
    if (pair.major >= 18) await p.src.unsafe(`ALTER TABLE ${ITEMS} ADD COLUMN "double qty" int GENERATED ALWAYS AS (qty * 2) VIRTUAL`);
    await insertRows(p.src, 1);
    const file = writeConfigFile(scope, cliConfig(p, { tables: TABLES }));

    const initial = await runCli(scope, ['schema', 'diff', '--config', file]);
    assert.equal(initial.code, 2, `diff before the copy must report what is missing:\n${initial.stdout}${initial.stderr}`);
    assert.match(initial.stdout, /missing on the target .*\n(.*\n)*  table "Sales"."Order ""Items"""/);

    const copy = await runCli(scope, ['schema', 'copy', '--config', file]);
    assert.equal(copy.code, 0, `schema copy failed:\n${copy.stdout}${copy.stderr}`);
    assert.match(copy.stderr, /schema: created table \\"Sales\\".\\"Order \\"\\"Items\\"\\"\\"/, 'a log line for each object created');
    assert.match(copy.stdout, /ran \d+ statement\(s\) on the target/);

    // Spot checks on the target, from its own catalogs.
    assert.deepEqual(await texts(p.dst, `SELECT enumlabel AS r FROM pg_enum WHERE enumtypid = '${SALES}."Mood"'::regtype ORDER BY enumsortorder`), ['sad', 'ok', "it's great"]);
    assert.deepEqual(await texts(p.dst, `SELECT attname || ':' || attidentity::text || attgenerated::text AS r FROM pg_attribute WHERE attrelid = '${ITEMS}'::regclass AND attname IN ('id', 'total', 'double qty') ORDER BY 1`),
      [...(pair.major >= 18 ? ['double qty:v'] : []), 'id:a', 'total:s']);
    assert.deepEqual(await texts(p.dst, `SELECT collname || ':' || collprovider::text || ':' || collisdeterministic::text AS r FROM pg_collation WHERE collnamespace = '${SALES}'::regnamespace ORDER BY 1`),
      ['Case "C":c:true', 'ci:i:false']);
    assert.deepEqual(await texts(p.dst, `SELECT conname || ':' || contype::text AS r FROM pg_constraint WHERE conrelid = '${BOOKING}'::regclass AND contype <> 'n' ORDER BY 1`), ['Booking_pkey:p', 'no double booking:x']);
    assert.deepEqual(await texts(p.dst, `SELECT c.relname || ':' || pg_get_expr(c.relpartbound, c.oid) AS r FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '${EVENTS}'::regclass ORDER BY 1`),
      ["Events 2025:FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')", 'Events default:DEFAULT']);
    assert.deepEqual(await texts(p.dst, `SELECT relreplident::text AS r FROM pg_class WHERE oid = '${NOTES}'::regclass`), ['f']);
    assert.deepEqual(await texts(p.dst, `SELECT obj_description('${CUSTOMER}'::regclass, 'pg_class') AS r`), ["customers, quoted 'names'"]);
    assert.deepEqual(await texts(p.dst, `SELECT seqstart || '/' || seqincrement AS r FROM pg_sequence WHERE seqrelid = '${SALES}."Invoice No"'::regclass`), ['1000/10']);

    const diff = await runCli(scope, ['schema', 'diff', '--config', file]);
    assert.equal(diff.code, 0, `diff after the copy must find nothing:\n${diff.stdout}${diff.stderr}`);
    // The five tables, the two partitions and the suite's marker table; serial and default sequences.
    assert.match(diff.stdout, /source and target match: 8 table\(s\), 6 type\(s\), 3 sequence\(s\), 2 collation\(s\)/);

    // A second copy creates nothing.
    const again = await runCli(scope, ['schema', 'copy', '--config', file]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to create on the target/);

    await streamAndCompare(scope, p, 'full_copy');
  });

  it('names each changed target object; --apply-diff applies the safe fixes and refuses the rest', async () => {
    const p = await databasePair(scope, pair, 'changed');
    await p.src.unsafe(`
      CREATE TYPE public."Colour" AS ENUM ('red', 'green');
      CREATE TABLE public."Diffed" (id int PRIMARY KEY, qty int NOT NULL, note text DEFAULT 'n/a', colour public."Colour", "New Column" text);
      CREATE INDEX "Diffed note" ON public."Diffed" (note);`);
    const file = writeConfigFile(scope, cliConfig(p, { tables: ['public."Diffed"'] }));
    assert.equal((await runCli(scope, ['schema', 'copy', '--config', file])).code, 0);
    // The target drifts; the source gains an enum label.
    await p.dst.unsafe(`
      ALTER TABLE public."Diffed" ALTER COLUMN qty TYPE bigint, ALTER COLUMN note DROP DEFAULT, DROP COLUMN "New Column", ADD COLUMN "Only Here" int;
      DROP INDEX public."Diffed note";`);
    await p.src.unsafe(`ALTER TYPE public."Colour" ADD VALUE 'blue'`);

    const diff = await runCli(scope, ['schema', 'diff', '--config', file]);
    assert.equal(diff.code, 2, diff.stdout + diff.stderr);
    const expected = [
      /column "qty" of "public"."Diffed": integer on the source, bigint on the target \(not applied: /,
      /column "note" of "public"."Diffed": default 'n\/a'::text on the source, none on the target \(--apply-diff runs: ALTER TABLE "public"."Diffed" ALTER COLUMN "note" SET DEFAULT 'n\/a'::text\)/,
      /column "New Column" of "public"."Diffed": text missing on the target \(--apply-diff runs: ALTER TABLE "public"."Diffed" ADD COLUMN "New Column" text\)/,
      /column "Only Here" of "public"."Diffed": integer exists only on the target \(not applied: pgtide never drops/,
      /index "Diffed note" on "public"."Diffed": missing on the target/,
      /type "public"."Colour": label 'blue' missing on the target \(--apply-diff runs: ALTER TYPE "public"."Colour" ADD VALUE 'blue' AFTER 'green'\)/,
    ];
    for (const pattern of expected) assert.match(diff.stdout, pattern);

    const plainCopy = await runCli(scope, ['schema', 'copy', '--config', file]);
    assert.equal(plainCopy.code, 2, 'without --apply-diff the differences stay and the exit code says so');
    assert.match(plainCopy.stdout, /nothing to create on the target/);
    assert.deepEqual(await texts(p.dst, `SELECT count(*)::text AS r FROM pg_attribute WHERE attrelid = 'public."Diffed"'::regclass AND attname = 'New Column'`), ['0']);

    const applied = await runCli(scope, ['schema', 'copy', '--apply-diff', '--config', file]);
    assert.equal(applied.code, 2, `the refused type change remains:\n${applied.stdout}${applied.stderr}`);
    assert.match(applied.stdout, /ran 4 statement\(s\) on the target/);
    const fixed = await runCli(scope, ['schema', 'diff', '--config', file]);
    assert.equal(fixed.code, 2);
    const left = fixed.stdout.split('\n').filter((l) => l.startsWith('  '));
    assert.deepEqual(left.map((l) => l.replace(/ \(not applied.*$/, '')), [
      '  column "qty" of "public"."Diffed": integer on the source, bigint on the target',
      '  column "Only Here" of "public"."Diffed": integer exists only on the target',
    ]);
    assert.deepEqual(await texts(p.dst, `SELECT enumlabel AS r FROM pg_enum WHERE enumtypid = 'public."Colour"'::regtype ORDER BY enumsortorder`), ['red', 'green', 'blue']);
  });

  it('a statement the target refuses changes nothing and names the object; a foreign key to an unreplicated table is left out', async () => {
    const p = await databasePair(scope, pair, 'refused');
    const fn = `CREATE FUNCTION public.next_code() RETURNS int LANGUAGE sql AS 'SELECT 42'`;
    await p.src.unsafe(`${fn};
      CREATE TABLE public."Elsewhere" (id int PRIMARY KEY);
      CREATE TABLE public."Plain" (id int PRIMARY KEY, other int CONSTRAINT "to elsewhere" REFERENCES public."Elsewhere" (id));
      CREATE TABLE public."Coded" (id int PRIMARY KEY, code int DEFAULT public.next_code());`);
    const file = writeConfigFile(scope, cliConfig(p, { tables: ['public."Plain"', 'public."Coded"'] }));

    const failed = await runCli(scope, ['schema', 'copy', '--config', file]);
    assert.equal(failed.code, 1, failed.stdout + failed.stderr);
    assert.match(failed.stderr, /error \[SCHEMA_APPLY_FAILED\] \(SQLSTATE 42883\): creating table "public"."Coded" on the target failed: .*function public\.next_code\(\) does not exist.*Nothing was changed/);
    assert.deepEqual(await texts(p.dst, `SELECT count(*)::text AS r FROM pg_class WHERE relname IN ('Plain', 'Coded')`), ['0'], 'one transaction: the table created before the failure is gone too');

    await p.dst.unsafe(fn);
    const copied = await runCli(scope, ['schema', 'copy', '--config', file]);
    assert.equal(copied.code, 0, copied.stdout + copied.stderr);
    assert.match(copied.stdout, /left out:\n {2}foreign key "to elsewhere" on "public"."Plain" \(references "public"."Elsewhere", which is not replicated\)/);
    assert.deepEqual(await texts(p.dst, `SELECT conname AS r FROM pg_constraint WHERE conrelid = 'public."Plain"'::regclass AND contype IN ('p', 'f') ORDER BY 1`), ['Plain_pkey']);
    assert.equal((await runCli(scope, ['schema', 'diff', '--config', file])).code, 0, 'the left-out foreign key is no difference');

    const unknown = await runCli(scope, ['schema', 'copy', '--config', writeConfigFile(scope, cliConfig(p, { tables: ['public."Coded"', 'public.coded'] }))]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /error \[TABLE_MISSING_ON_SOURCE\]: "public"."coded" does not exist on the source or is not a table/);
  });

  it('follows an existing publication: its tables only; a root published via publish_via_partition_root brings its partitions', async () => {
    const p = await databasePair(scope, pair, 'via_root');
    await p.src.unsafe(`
      CREATE TABLE public.measures (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
      CREATE TABLE public.measures_eu PARTITION OF public.measures FOR VALUES IN ('eu') PARTITION BY RANGE (id);
      CREATE TABLE public.measures_eu_low PARTITION OF public.measures_eu FOR VALUES FROM (0) TO (1000);
      CREATE TABLE public.measures_us PARTITION OF public.measures FOR VALUES IN ('us');
      CREATE TABLE public.not_published (id int PRIMARY KEY);
      CREATE PUBLICATION via_root FOR TABLE public.measures WITH (publish_via_partition_root = true);`);
    const file = writeConfigFile(scope, cliConfig(p, { name: 'via_root', publication: 'via_root' }));
    const copied = await runCli(scope, ['schema', 'copy', '--config', file]);
    assert.equal(copied.code, 0, copied.stdout + copied.stderr);
    assert.deepEqual(await texts(p.dst, `SELECT c.relname || ':' || c.relkind::text || ':' || coalesce(pg_get_expr(c.relpartbound, c.oid), '-') AS r
        FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname <> 'pgtide_test_marker' ORDER BY 1`), [
      'measures:p:-',
      "measures_eu:p:FOR VALUES IN ('eu')",
      'measures_eu_low:r:FOR VALUES FROM (0) TO (1000)',
      "measures_us:r:FOR VALUES IN ('us')",
    ]);
    assert.equal((await runCli(scope, ['schema', 'diff', '--config', file])).code, 0);
  });

  it('schema.bootstrap: true creates the tables at start, before the initial copy', async () => {
    const p = await databasePair(scope, pair, 'boot');
    await p.src.unsafe(`CREATE TABLE public."Boot ""Strapped""" (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text NOT NULL DEFAULT 'x');
      INSERT INTO public."Boot ""Strapped""" (v) SELECT 'v' || g FROM generate_series(1, 50) g;`);
    const { lines, logger } = capturingLogger();
    const engine = startEngine(scope, parseConfig(configInput(p, { name: 'boot', tables: ['public."Boot ""Strapped"""'], schema: { bootstrap: true } })), {}, logger);
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    await p.src.unsafe(`INSERT INTO public."Boot ""Strapped""" (v) VALUES ('after')`);
    await waitForCatchUp(p, { engine });
    await assertTablesEqual(p, 'public."Boot ""Strapped"""');
    assert.ok(lines.some((l) => l.includes('schema: created table \\"public\\".\\"Boot \\"\\"Strapped\\"\\"\\"')), lines.join(''));
    await engine.stop();
  });
});
