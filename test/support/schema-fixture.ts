/**
 * The full object set of a schema bootstrap, shared by schema-bootstrap.test.ts
 * (every source major into 18) and schema-majors.test.ts (the source/target
 * major matrix): every object kind the copy handles, with identifiers that
 * need quoting, and rows for each table.
 */
import assert from 'node:assert/strict';
import type postgres from 'postgres';
import { startStreaming, waitForCatchUp, assertTablesEqual, type Pair, type TestScope } from './replication.js';

export const SALES = '"Sales"';
export const CUSTOMER = `${SALES}."Customer"`;
export const ITEMS = `${SALES}."Order ""Items"""`;
export const BOOKING = `${SALES}."Booking"`;
export const NOTES = `${SALES}."Notes"`;
export const EVENTS = `"Ünïcødé Schema"."Events"`;
export const EVENTS_2025 = `"Ünïcødé Schema"."Events 2025"`;
export const EVENTS_DEFAULT = `"Ünïcødé Schema"."Events default"`;
export const TABLES = [CUSTOMER, ITEMS, BOOKING, NOTES, EVENTS];
/** Compared row for row: the leaves hold the rows (published without publish_via_partition_root). */
export const COMPARED = [CUSTOMER, ITEMS, BOOKING, NOTES, EVENTS_2025, EVENTS_DEFAULT];

/** Every object kind the bootstrap copies, with identifiers that need quoting. */
export const SOURCE_DDL = `
  CREATE SCHEMA ${SALES};
  CREATE SCHEMA "Ünïcødé Schema";
  COMMENT ON SCHEMA ${SALES} IS 'not copied: schemas carry no comment in the model';
  CREATE COLLATION ${SALES}."Case ""C""" (locale = 'C');
  -- ICU keeps its locale in collcollate on 14, colliculocale on 15-16, colllocale on 17+.
  CREATE COLLATION ${SALES}."ci" (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
  CREATE DOMAIN ${SALES}."code" AS text COLLATE ${SALES}."Case ""C""" CHECK (VALUE <> '');
  CREATE TYPE ${SALES}."name range" AS RANGE (subtype = text, collation = ${SALES}."Case ""C""");
  CREATE TYPE ${SALES}."Mood" AS ENUM ('sad', 'ok', 'it''s great');
  COMMENT ON TYPE ${SALES}."Mood" IS 'how it went';
  CREATE DOMAIN ${SALES}."positive amount" AS numeric(12,2) DEFAULT 1 NOT NULL CONSTRAINT "amount > 0" CHECK (VALUE > 0);
  CREATE TYPE ${SALES}."Address" AS (street text, "Zip Code" text COLLATE ${SALES}."Case ""C""", mood ${SALES}."Mood");
  CREATE TYPE ${SALES}."float range" AS RANGE (subtype = float8, subtype_diff = float8mi);
  CREATE SEQUENCE ${SALES}."Invoice No" START 1000 INCREMENT 10;
  CREATE TABLE ${CUSTOMER} (
    id serial PRIMARY KEY,
    "Name" text COLLATE ${SALES}."Case ""C""" NOT NULL,
    mood ${SALES}."Mood" DEFAULT 'ok',
    addr ${SALES}."Address",
    "Ünïcødé ""Column""" text COLLATE ${SALES}."ci",
    CONSTRAINT "Name is unique" UNIQUE ("Name")
  );
  COMMENT ON TABLE ${CUSTOMER} IS 'customers, quoted ''names''';
  COMMENT ON COLUMN ${CUSTOMER}."Name" IS 'the name';
  CREATE TABLE ${ITEMS} (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 3) PRIMARY KEY,
    customer int NOT NULL CONSTRAINT "to customer" REFERENCES ${CUSTOMER} (id),
    qty int NOT NULL CONSTRAINT "qty > 0" CHECK (qty > 0),
    price ${SALES}."positive amount",
    total numeric GENERATED ALWAYS AS (qty * price) STORED,
    invoice bigint DEFAULT nextval('${SALES}."Invoice No"'),
    span ${SALES}."float range",
    moods ${SALES}."Mood"[],
    created timestamptz NOT NULL DEFAULT now()
  );
  CREATE INDEX "Items by customer" ON ${ITEMS} (customer, created DESC);
  CREATE INDEX "items expression" ON ${ITEMS} ((qty * 2)) WHERE qty > 1;
  COMMENT ON INDEX ${SALES}."Items by customer" IS 'for the customer page';
  COMMENT ON CONSTRAINT "qty > 0" ON ${ITEMS} IS 'no empty lines';
  CREATE TABLE ${BOOKING} (id int PRIMARY KEY, room int NOT NULL, during tsrange NOT NULL, code ${SALES}."code", names ${SALES}."name range",
    CONSTRAINT "no double booking" EXCLUDE USING gist (during WITH &&));
  CREATE TABLE ${NOTES} (body text, mood ${SALES}."Mood");
  ALTER TABLE ${NOTES} REPLICA IDENTITY FULL;
  CREATE TABLE ${EVENTS} (id bigint NOT NULL, at date NOT NULL, payload text DEFAULT 'none', PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
  CREATE TABLE ${EVENTS_2025} PARTITION OF ${EVENTS} FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
  CREATE TABLE ${EVENTS_DEFAULT} PARTITION OF ${EVENTS} DEFAULT;
  CREATE INDEX "Events payload" ON ${EVENTS} (payload);
`;

export async function insertRows(src: postgres.Sql, from: number): Promise<void> {
  await src.unsafe(`
    INSERT INTO ${CUSTOMER} ("Name", mood, addr, "Ünïcødé ""Column""")
      SELECT 'C' || g, (ARRAY['sad', 'ok', 'it''s great'])[1 + g % 3]::${SALES}."Mood", ROW('Street ' || g, 'Z' || g, 'ok')::${SALES}."Address", 'ü' || g
        FROM generate_series(${from}, ${from + 9}) g;
    INSERT INTO ${ITEMS} (customer, qty, price, span, moods)
      SELECT c.id, 1 + c.id % 4, c.id * 1.25, ${SALES}."float range"(c.id, c.id + 1), ARRAY['sad', 'ok']::${SALES}."Mood"[]
        FROM ${CUSTOMER} c WHERE c."Name" LIKE 'C%' AND c.id > (SELECT coalesce(max(customer), 0) FROM ${ITEMS});
    INSERT INTO ${BOOKING} SELECT g, g % 3, tsrange('2025-01-01'::timestamp + g * interval '1 day', '2025-01-01'::timestamp + (g + 1) * interval '1 day'),
           'c' || g, ${SALES}."name range"('a' || g, 'b' || g)
      FROM generate_series(${from}, ${from + 9}) g;
    INSERT INTO ${NOTES} SELECT 'note ' || g, 'sad' FROM generate_series(${from}, ${from + 4}) g;
    INSERT INTO ${EVENTS} SELECT g, CASE WHEN g % 2 = 0 THEN date '2025-03-01' ELSE date '2027-01-01' END, 'p' || g FROM generate_series(${from}, ${from + 9}) g;`);
}

/**
 * Streams the fixture's tables under `name` (slots are per cluster: each case
 * its own), inserts, updates and deletes rows of each, and compares every
 * table (each holding rows) once caught up.
 */
export async function streamAndCompare(scope: TestScope, p: Pair, name: string): Promise<void> {
  const engine = await startStreaming(scope, p, { name, tables: TABLES });
  await insertRows(p.src, 100);
  await p.src.unsafe(`UPDATE ${CUSTOMER} SET mood = 'it''s great', addr = ROW('moved', 'Z0', 'sad') WHERE id % 2 = 0;
    UPDATE ${NOTES} SET body = body || ' (edited)' WHERE body LIKE 'note 1%';
    DELETE FROM ${BOOKING} WHERE id % 5 = 0;
    UPDATE ${EVENTS} SET payload = 'changed' WHERE id % 3 = 0;`);
  await waitForCatchUp(p, { engine });
  for (const table of COMPARED) {
    const { count } = await assertTablesEqual(p, table);
    assert.ok(count > 0, `${table} holds rows`);
  }
  await engine.stop();
}
