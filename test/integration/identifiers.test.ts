/**
 * Schema, table and column names that need quoting — mixed case, spaces,
 * double quotes, dots, reserved words, non-ASCII — configured through
 * `tables:` with quoted names (parsed exactly as from the YAML file), through
 * the initial copy, streamed changes, key changes and TRUNCATE.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import {
  TestScope, startPair, ddlBoth, startStreaming, waitForCatchUp, assertTablesEqual, texts, writeConfigFile, configInput,
  type Pair, type RunningEngine,
} from '../support/replication.js';
import { loadConfigFile, parseConfig } from '../../src/control/config.js';

const ORDER_ITEMS = `"Ünïcødé Schema"."Order ""Items"" 2024"`;
const DOTTED = `"dotted.schema"."tbl.with.dots"`;
const CAMEL = `"CamelSchema"."CamelTable"`;
const FULL = `"Ünïcødé Schema"."no key, full identity"`;
const BY_INDEX = `"Ünïcødé Schema"."Identity By ""Index"""`;
/** Same table name as a replicated one, other schema: must stay untouched. */
const DECOY = `"Other"."Order ""Items"" 2024"`;
const LONG = `"Ünïcødé Schema"."${'ß'.repeat(30)}"`; // 60 bytes: just under the 63-byte identifier limit

/** Exactly as a user writes them under `tables:` in the YAML file. */
const CONFIG_TABLES = [
  ORDER_ITEMS,
  DOTTED,
  '"CamelSchema"."CamelTable"',
  FULL,
  BY_INDEX,
  LONG,
];

const DDL = `
  CREATE SCHEMA "Ünïcødé Schema";
  CREATE SCHEMA "dotted.schema";
  CREATE SCHEMA "CamelSchema";
  CREATE SCHEMA "Other";
  CREATE TABLE ${ORDER_ITEMS} (
    "Id" int PRIMARY KEY,
    "Ünit Price" numeric(10,2),
    "select" text,
    "a.b" text,
    "q""uote" text,
    " leading space" int,
    "MixedCase" text,
    lower_case text
  );
  CREATE TABLE ${DOTTED} ("key.part" int, "other.part" text, "v.v" text, PRIMARY KEY ("key.part", "other.part"));
  CREATE TABLE ${CAMEL} ("ID" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "Value" text, "value" text);
  CREATE TABLE ${FULL} ("Größe" int, "Farbe ""rot""" text, "😀" text);
  ALTER TABLE ${FULL} REPLICA IDENTITY FULL;
  CREATE TABLE ${BY_INDEX} ("Näme" text NOT NULL, "Ort.Zeit" int NOT NULL, "Wert" text);
  CREATE UNIQUE INDEX "Ünique ""Index""" ON ${BY_INDEX} ("Näme", "Ort.Zeit");
  ALTER TABLE ${BY_INDEX} REPLICA IDENTITY USING INDEX "Ünique ""Index""";
  CREATE TABLE ${DECOY} ("Id" int PRIMARY KEY, v text);
  CREATE TABLE ${LONG} ("${'ü'.repeat(31)}" int PRIMARY KEY, v text);
`;

describe('quoted identifiers', { timeout: 300_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;
  let engine: RunningEngine;
  const catchUp = () => waitForCatchUp(pair, { engine });
  const all = [ORDER_ITEMS, DOTTED, CAMEL, FULL, BY_INDEX, LONG];
  const allEqual = async () => { for (const t of all) await assertTablesEqual(pair, t); };

  before(async () => {
    pair = await startPair(scope, { name: 'ident' });
    await ddlBoth(pair, DDL);
    await pair.src.unsafe(`
      INSERT INTO ${ORDER_ITEMS} SELECT g, g * 1.5, 'sel ' || g, 'a.b ' || g, 'q"' || g, g, 'Mixed ' || g, 'lower ' || g FROM generate_series(1, 100) g;
      INSERT INTO ${DOTTED} SELECT g, 'part.' || g, 'v' FROM generate_series(1, 20) g;
      INSERT INTO ${CAMEL} ("Value", "value") SELECT 'V' || g, 'v' || g FROM generate_series(1, 20) g;
      INSERT INTO ${FULL} VALUES (1, 'rot', '😀'), (1, 'rot', '😀'), (NULL, NULL, NULL);
      INSERT INTO ${BY_INDEX} SELECT 'n' || g, g, 'w' FROM generate_series(1, 20) g;
      INSERT INTO ${LONG} VALUES (1, 'long');
      INSERT INTO ${DECOY} VALUES (1, 'source only');
    `);
    await pair.dst.unsafe(`INSERT INTO ${DECOY} VALUES (42, 'target only')`);
  });

  after(() => scope.cleanup());

  it('reads quoted names from the YAML config exactly', () => {
    const file = writeConfigFile(scope, { source: { url: pair.sourceUrl }, target: { url: pair.targetUrl }, tables: CONFIG_TABLES });
    const raw = parseYaml(readFileSync(file, 'utf8')) as { tables: string[] };
    assert.deepEqual(raw.tables, CONFIG_TABLES, 'YAML round trip');
    const config = loadConfigFile(file);
    assert.deepEqual(config.tables, [
      { schema: 'Ünïcødé Schema', name: 'Order "Items" 2024' },
      { schema: 'dotted.schema', name: 'tbl.with.dots' },
      { schema: 'CamelSchema', name: 'CamelTable' },
      { schema: 'Ünïcødé Schema', name: 'no key, full identity' },
      { schema: 'Ünïcødé Schema', name: 'Identity By "Index"' },
      { schema: 'Ünïcødé Schema', name: 'ß'.repeat(30) },
    ]);
  });

  it('copies the configured tables and only those', async () => {
    engine = await startStreaming(scope, pair, { tables: CONFIG_TABLES });
    await catchUp();
    await allEqual();
    assert.deepEqual(await texts(pair.dst, `SELECT v AS r FROM ${DECOY} ORDER BY 1`), ['target only']);
    const states = await texts(pair.dst, `SELECT schema_name || '|' || table_name || '|' || state AS r FROM pgtide.table_state WHERE table_name <> 'pgtide_test_marker' ORDER BY 1`);
    assert.deepEqual(states, [
      'CamelSchema|CamelTable|ready',
      'dotted.schema|tbl.with.dots|ready',
      'Ünïcødé Schema|Identity By "Index"|ready',
      'Ünïcødé Schema|no key, full identity|ready',
      'Ünïcødé Schema|Order "Items" 2024|ready',
      `Ünïcødé Schema|${'ß'.repeat(30)}|ready`,
    ].sort());
    const [pub] = await pair.src.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM pg_publication_tables WHERE pubname = 'pgtide_pub'`);
    assert.equal(pub!.n, CONFIG_TABLES.length + 1, 'the publication holds the configured tables (and the test marker)');
  });

  it('streams inserts, updates, key changes and deletes', async () => {
    const s = pair.src;
    await s.unsafe(`INSERT INTO ${ORDER_ITEMS} VALUES (1001, 9.99, 'select', 'a.b', 'q"x', -1, 'Mixed', 'lower')`);
    await s.unsafe(`UPDATE ${ORDER_ITEMS} SET "Ünit Price" = "Ünit Price" * 2, "select" = NULL WHERE "Id" % 3 = 0`);
    await s.unsafe(`UPDATE ${ORDER_ITEMS} SET "Id" = "Id" + 5000, "q""uote" = 'moved' WHERE "Id" % 10 = 0`);
    await s.unsafe(`DELETE FROM ${ORDER_ITEMS} WHERE "Id" % 7 = 0`);
    await s.unsafe(`UPDATE ${DOTTED} SET "v.v" = 'changed' WHERE "key.part" < 5`);
    await s.unsafe(`UPDATE ${DOTTED} SET "other.part" = 'renamed.' || "key.part" WHERE "key.part" BETWEEN 5 AND 8`);
    await s.unsafe(`DELETE FROM ${DOTTED} WHERE "key.part" > 15`);
    await s.unsafe(`INSERT INTO ${CAMEL} ("Value", "value") VALUES ('new', 'NEW')`);
    await s.unsafe(`UPDATE ${CAMEL} SET "Value" = upper("Value") WHERE "ID" % 2 = 0`);
    await s.unsafe(`DELETE FROM ${CAMEL} WHERE "ID" = 3`);
    await s.unsafe(`UPDATE ${FULL} SET "😀" = '🙃' WHERE ctid = (SELECT min(ctid) FROM ${FULL} WHERE "Größe" = 1)`);
    await s.unsafe(`DELETE FROM ${FULL} WHERE "Größe" IS NULL`);
    await s.unsafe(`INSERT INTO ${FULL} VALUES (2, 'blau', NULL)`);
    await s.unsafe(`UPDATE ${BY_INDEX} SET "Wert" = 'x' WHERE "Ort.Zeit" % 2 = 0`);
    await s.unsafe(`UPDATE ${BY_INDEX} SET "Näme" = "Näme" || '!' WHERE "Ort.Zeit" % 5 = 0`);
    await s.unsafe(`DELETE FROM ${BY_INDEX} WHERE "Ort.Zeit" = 1`);
    await s.unsafe(`UPDATE ${LONG} SET v = 'longer' WHERE "${'ü'.repeat(31)}" = 1`);
    await s.unsafe(`UPDATE ${DECOY} SET v = 'not replicated' WHERE "Id" = 1`);
    await catchUp();
    await allEqual();
    assert.deepEqual(await texts(pair.dst, `SELECT v AS r FROM ${DECOY} ORDER BY 1`), ['target only']);
  });

  it('streams TRUNCATE of quoted tables', async () => {
    await pair.src.unsafe(`TRUNCATE ${DOTTED}, ${FULL}`);
    await pair.src.unsafe(`INSERT INTO ${FULL} VALUES (3, 'grün', '✓')`);
    await pair.src.unsafe(`TRUNCATE ${DECOY}`);
    await catchUp();
    await allEqual();
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM ${DOTTED}`), ['0']);
    assert.deepEqual(await texts(pair.dst, `SELECT v AS r FROM ${DECOY} ORDER BY 1`), ['target only']);
  });

  it('resumes after a restart with the quoted table list', async () => {
    await engine.stop();
    await pair.src.unsafe(`INSERT INTO ${ORDER_ITEMS} ("Id", "MixedCase") VALUES (7001, 'while stopped')`);
    engine = await startStreaming(scope, pair, { tables: CONFIG_TABLES });
    await pair.src.unsafe(`UPDATE ${ORDER_ITEMS} SET lower_case = 'after restart' WHERE "Id" = 7001`);
    await catchUp();
    await allEqual();
  });

  it('rejects a configured table missing on the source, naming it as quoted', async () => {
    const config = parseConfig(configInput(pair, { name: 'missing', tables: ['"Ünïcødé Schema"."Nope ""x"""'] }));
    const { Engine } = await import('../../src/control/engine.js');
    const { silentLogger } = await import('../../src/control/logger.js');
    await assert.rejects(new Engine(config, silentLogger()).run(new AbortController().signal), (error: { code?: string; message?: string }) => {
      assert.equal(error.code, 'TABLE_MISSING_ON_SOURCE');
      assert.match(error.message ?? '', /"Ünïcødé Schema"\."Nope ""x"""/);
      return true;
    });
  });
});
