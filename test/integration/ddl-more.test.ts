/**
 * DDL replication, part 3: what the target cannot compute by itself. A column
 * added with a volatile default or as identity to a table with rows (the
 * table is copied again, ddl.rewriteVolatile), and sequences a new serial
 * column or CREATE SEQUENCE brings. One cluster pair, one database per case.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TestScope, startPair, databasePair, ddlBoth, startStreaming, startEngine, waitForCatchUp, assertTablesEqual, texts,
  capturingLogger, withTimeout, configInput, waitFor, type Pair,
} from '../support/replication.js';
import { parseConfig } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';

/** The re-copy runs between two streaming attempts: the marker of waitForCatchUp may arrive before it. */
async function recopied(pair: Pair, table: string, before: readonly string[]): Promise<string[]> {
  return waitFor(`${table} copied again`, async () => {
    const now = await texts(pair.dst, SYNC(table));
    return now[0]?.startsWith('ready ') && now[0] !== before[0] ? now : undefined;
  }, { timeoutMs: 60_000 });
}

const SYNC = (table: string) => `SELECT state || ' ' || coalesce(sync_lsn::text, '-') AS r FROM pgtide.table_state WHERE table_name = '${table}'`;

describe('DDL replication: rewrites and sequences', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let base: Pair;

  before(async () => {
    base = await startPair(scope, { name: 'ddlmore' });
  });
  after(() => scope.cleanup());

  it('a volatile default or an identity column added to a table with rows re-copies the table; a stable default or an empty table does not', async () => {
    const pair = await databasePair(scope, base, 'ddl_rewrite');
    await ddlBoth(pair, `CREATE TABLE r (id int PRIMARY KEY, v text); CREATE TABLE e (id int PRIMARY KEY, v text);`);
    await pair.src.unsafe(`INSERT INTO r SELECT g, 'v' || g FROM generate_series(1, 50) g`);
    const { lines, logger } = capturingLogger();
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.r', 'public.e'], ddl: { capture: true } })), {}, logger);
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    const copiedAt = await texts(pair.dst, SYNC('r'));

    // A stable default is stored once (no rewrite): replayed, no re-copy.
    await pair.src.unsafe(`ALTER TABLE r ADD COLUMN k int DEFAULT 7`);
    // An empty table rewritten for a volatile default: nothing to diverge, no re-copy.
    await pair.src.unsafe(`ALTER TABLE e ADD COLUMN at timestamptz DEFAULT clock_timestamp()`);
    await pair.src.unsafe(`INSERT INTO e (id, v) VALUES (1, 'one')`);
    await waitForCatchUp(pair, { engine });
    assert.deepEqual(await texts(pair.dst, SYNC('r')), copiedAt, 'no re-copy for a stable default');
    await assertTablesEqual(pair, 'public.r');
    await assertTablesEqual(pair, 'public.e');

    // Volatile default on a filled table, rows before and after it in the same transaction.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO r (id, v) VALUES (51, 'before')`);
      await tx.unsafe(`ALTER TABLE r ADD COLUMN at timestamptz DEFAULT clock_timestamp()`);
      await tx.unsafe(`INSERT INTO r (id, v) VALUES (52, 'after')`);
      await tx.unsafe(`UPDATE r SET v = 'changed' WHERE id = 1`);
    });
    await pair.src.unsafe(`INSERT INTO r (id, v) VALUES (53, 'next')`);
    await pair.src.unsafe(`DELETE FROM r WHERE id = 2`);
    const first = await recopied(pair, 'r', copiedAt);
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    await assertTablesEqual(pair, 'public.r');

    // An identity column added to the filled table: the source numbers the rows in its order.
    await pair.src.unsafe(`UPDATE r SET v = v || '!' WHERE id % 7 = 0`);
    await pair.src.unsafe(`ALTER TABLE r ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY`);
    await pair.src.unsafe(`INSERT INTO r (id, v) VALUES (54, 'numbered')`);
    await recopied(pair, 'r', first);
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    await assertTablesEqual(pair, 'public.r');
    await assertTablesEqual(pair, 'public.e');
    const notes = lines.filter((l) => l.includes('copied again from a new snapshot'));
    assert.equal(notes.length, 2, 'one re-copy per volatile rewrite, none for the stable default or the empty table');
    assert.equal(engine.finished, false, 'the engine kept streaming');
    await engine.stop();
  });

  it('a volatile rewrite inside a large transaction applied while it streams: re-copied once it committed', async () => {
    const pair = await databasePair(scope, base, 'ddl_rewrite_streamed');
    await ddlBoth(pair, `CREATE TABLE big (id int PRIMARY KEY, pad text); CREATE TABLE side (id int PRIMARY KEY);`);
    await pair.src.unsafe(`INSERT INTO big SELECT g, 'p' FROM generate_series(1, 100) g`);
    const { lines, logger } = capturingLogger();
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.big', 'public.side'], ddl: { capture: true } })), {}, logger);
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    const copiedAt = await texts(pair.dst, SYNC('big'));
    // Well past logical_decoding_work_mem (64kB in the test clusters): the source streams it, while
    // other transactions commit beside it.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(101, 3000) g`);
      await pair.src.unsafe(`INSERT INTO side VALUES (1)`);
      await tx.unsafe(`ALTER TABLE big ADD COLUMN at timestamptz DEFAULT clock_timestamp()`);
      await pair.src.unsafe(`INSERT INTO side VALUES (2)`);
      await tx.unsafe(`INSERT INTO big (id, pad) SELECT g, repeat('y', 100) FROM generate_series(3001, 6000) g`);
    });
    await pair.src.unsafe(`INSERT INTO side VALUES (3)`);
    await recopied(pair, 'big', copiedAt);
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    await assertTablesEqual(pair, 'public.big');
    await assertTablesEqual(pair, 'public.side');
    assert.equal(lines.filter((l) => l.includes('copied again from a new snapshot')).length, 1, 'one re-copy');
    await engine.stop();
  });

  it('sequences: a serial column added, CREATE SEQUENCE used by a default, a new table with a bigserial key are created on the target', async () => {
    const pair = await databasePair(scope, base, 'ddl_sequences');
    await ddlBoth(pair, `CREATE TABLE s (id int PRIMARY KEY, v text); CREATE TABLE s_empty (id int PRIMARY KEY);`);
    await pair.src.unsafe(`INSERT INTO s SELECT g, 'v' || g FROM generate_series(1, 5) g`);
    const engine = await startStreaming(scope, pair, { name: pair.database, tables: ['public.s', 'public.s_empty'], ddl: { capture: true } });

    // A serial column on an empty table: its sequence, default and ownership; rows use it.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`ALTER TABLE s_empty ADD COLUMN n serial`);
      await tx.unsafe(`INSERT INTO s_empty (id) SELECT g FROM generate_series(1, 3) g`);
    });
    // A sequence of its own, then used as a column's default (no rewrite), with rows before and after.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO s VALUES (6, 'six')`);
      await tx.unsafe(`CREATE SEQUENCE ticket_seq AS integer START 100 INCREMENT 5`);
      await tx.unsafe(`ALTER TABLE s ADD COLUMN ticket int`);
      await tx.unsafe(`ALTER TABLE s ALTER COLUMN ticket SET DEFAULT nextval('ticket_seq')`);
      await tx.unsafe(`INSERT INTO s (id, v) VALUES (7, 'seven')`);
    });
    // A bigserial added to a filled table: the source numbers the rows (a volatile rewrite: re-copied).
    await waitForCatchUp(pair, { engine });
    const copiedAt = await texts(pair.dst, SYNC('s'));
    await pair.src.unsafe(`ALTER TABLE s ADD COLUMN n bigserial`);
    await pair.src.unsafe(`INSERT INTO s (id, v) VALUES (8, 'eight')`);
    // A new table with a bigserial key joins with its sequence.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`CREATE TABLE s_new (id bigserial PRIMARY KEY, v text)`);
      await tx.unsafe(`INSERT INTO s_new (v) VALUES ('a'), ('b')`);
    });
    await pair.src.unsafe(`INSERT INTO s_new (v) VALUES ('c')`);
    await recopied(pair, 's', copiedAt);
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    for (const table of ['public.s', 'public.s_empty', 'public.s_new']) await assertTablesEqual(pair, table);
    const sequences = `SELECT schemaname || '.' || sequencename || ' ' || data_type || ' start ' || start_value || ' by ' || increment_by || ' max ' || max_value
                              || ' owner ' || coalesce((SELECT refobjid::regclass::text || '.' || a.attname FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                                         WHERE d.classid = 'pg_class'::regclass AND d.objid = (schemaname || '.' || sequencename)::regclass AND d.deptype = 'a'), '-') AS r
                         FROM pg_sequences WHERE schemaname = 'public' AND sequencename NOT LIKE 'pgtide%' ORDER BY 1`;
    const onSource = await texts(pair.src, sequences);
    assert.deepEqual(onSource, ['public.s_empty_n_seq integer start 1 by 1 max 2147483647 owner s_empty.n', 'public.s_n_seq bigint start 1 by 1 max 9223372036854775807 owner s.n',
      'public.s_new_id_seq bigint start 1 by 1 max 9223372036854775807 owner s_new.id', 'public.ticket_seq integer start 100 by 5 max 2147483647 owner -']);
    assert.deepEqual(await texts(pair.dst, sequences), onSource);
    const defaults = `SELECT attrelid::regclass::text || '.' || attname || ' ' || pg_get_expr(adbin, adrelid) AS r FROM pg_attrdef JOIN pg_attribute ON attrelid = adrelid AND attnum = adnum
                       WHERE adrelid IN ('public.s'::regclass, 'public.s_empty'::regclass, 'public.s_new'::regclass) ORDER BY 1`;
    assert.deepEqual(await texts(pair.dst, defaults), await texts(pair.src, defaults));
    assert.deepEqual(await texts(pair.dst, `SELECT reason AS r FROM pgtide.ddl_unhandled`), []);
    await engine.stop();
  });

  it('views, functions and triggers are replayed as text when the query string is that one statement, under its search_path; otherwise recorded', async () => {
    const pair = await databasePair(scope, base, 'ddl_objects');
    await ddlBoth(pair, `CREATE TABLE o (id int PRIMARY KEY, v text); CREATE SCHEMA app; CREATE FUNCTION app.triple(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x * 3'; CREATE SCHEMA other;`);
    await pair.src.unsafe(`INSERT INTO o SELECT g, 'v' || g FROM generate_series(1, 5) g`);
    const engine = await startStreaming(scope, pair, { name: pair.database, tables: ['public.o'], ddl: { capture: true, onError: 'skip' } });

    await pair.src.unsafe(`CREATE FUNCTION double_it(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x * 2'`);
    // Unqualified triple() resolves only under the source session's search_path.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO o VALUES (6, 'six')`);
      await tx.unsafe(`SET LOCAL search_path = public, app`);
      await tx.unsafe(`CREATE VIEW o_view AS SELECT id, double_it(id) AS d, triple(id) AS t FROM o`);
      await tx.unsafe(`INSERT INTO o VALUES (7, 'seven')`);
    });
    await pair.src.unsafe(`CREATE FUNCTION o_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := upper(NEW.v); RETURN NEW; END $$`);
    await pair.src.unsafe(`CREATE TRIGGER o_trg BEFORE INSERT ON o FOR EACH ROW EXECUTE FUNCTION o_touch()`);
    await pair.src.unsafe(`INSERT INTO o VALUES (8, 'eight')`);
    // Not replayed: two statements in one string, a DO block; not in scope: another schema.
    await pair.src.unsafe(`CREATE VIEW v_a AS SELECT 1 AS x; CREATE VIEW v_b AS SELECT 2 AS x`);
    await pair.src.unsafe(`DO $$ BEGIN CREATE VIEW v_do AS SELECT 1 AS x; END $$`);
    await pair.src.unsafe(`CREATE VIEW other.elsewhere AS SELECT 1 AS x`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.o');
    const view = `SELECT string_agg(id || ':' || d || ':' || t, ',' ORDER BY id) AS r FROM o_view`;
    assert.deepEqual(await texts(pair.dst, view), await texts(pair.src, view));
    assert.deepEqual(await texts(pair.dst, `SELECT tgname || ' ' || tgenabled::text AS r FROM pg_trigger WHERE tgrelid = 'o'::regclass AND NOT tgisinternal`), ['o_trg O']);
    assert.deepEqual(await texts(pair.dst, `SELECT string_agg(viewname, ',' ORDER BY viewname) AS r FROM pg_views WHERE schemaname IN ('public', 'other')`), ['o_view']);
    const unhandled = await texts(pair.dst, `SELECT status || ' ' || reason AS r FROM pgtide.ddl_unhandled ORDER BY commit_lsn, ordinal`);
    assert.equal(unhandled.length, 3, unhandled.join('\n'));
    assert.match(unhandled[0]!, /^policy .*CREATE VIEW is not replayed: the query string holds 2 statements/);
    assert.match(unhandled[1]!, /^policy .*CREATE VIEW is not replayed: the query string holds 2 statements/);
    assert.match(unhandled[2]!, /^policy .*CREATE VIEW is not replayed: the query string is not that statement/);

    await pair.src.unsafe(`DROP VIEW o_view`);
    await pair.src.unsafe(`DROP TRIGGER o_trg ON o`);
    await pair.src.unsafe(`INSERT INTO o VALUES (9, 'nine')`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.o');
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM pg_views WHERE viewname = 'o_view'`), ['0']);
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM pg_trigger WHERE tgname = 'o_trg'`), ['0']);
    await engine.stop();
  });

  it('ddl.rewriteVolatile: error stops before applying, naming the table and the LSN', async () => {
    const pair = await databasePair(scope, base, 'ddl_rewrite_err');
    await ddlBoth(pair, `CREATE TABLE w (id int PRIMARY KEY, v text);`);
    await pair.src.unsafe(`INSERT INTO w SELECT g, 'v' || g FROM generate_series(1, 10) g`);
    const engine = await startStreaming(scope, pair, { name: pair.database, tables: ['public.w'], ddl: { capture: true, rewriteVolatile: 'error' } });
    await pair.src.unsafe(`ALTER TABLE w ADD COLUMN r double precision DEFAULT random()`);
    await pair.src.unsafe(`INSERT INTO w (id, v) VALUES (11, 'after')`);
    await withTimeout(engine.done, 60_000, 'engine did not stop on the volatile rewrite');
    assert.ok(engine.error instanceof PgtideError && engine.error.code === 'DDL_REWRITE_VOLATILE', `stopped with DDL_REWRITE_VOLATILE, got ${String(engine.error)}`);
    assert.match(engine.error.message, /"public"\."w".*random\(\).*LSN [0-9A-F]+\/[0-9A-F]+/);
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM pg_attribute WHERE attrelid = 'w'::regclass AND attname = 'r'`), ['0'], 'nothing applied');
    assert.deepEqual(await texts(pair.dst, `SELECT status AS r FROM pgtide.ddl_unhandled`), ['stopped']);
  });
});
