/**
 * ADD COLUMN with a stable default that depends on the moment or the session
 * (`now()`, `current_timestamp`, `statement_timestamp()`, `current_user`,
 * `current_setting(…)`): PostgreSQL evaluates it once, without a rewrite, and
 * the existing rows read that value (pg_attribute.attmissingval). On the
 * target they must hold the source's value, not the target's at the time of
 * the apply; new rows get the expression. The source transaction sleeps after
 * the ALTER, so the target's clock at the apply is at least that much later
 * than the source's value, and the comparison is exact (column for column).
 * One cluster pair, one database per case.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TestScope, startPair, databasePair, ddlBoth, startStreaming, startEngine, waitForCatchUp, assertTablesEqual, texts, writeConfigFile, runCli, cliConfig,
  configInput, withTimeout, type Pair,
} from '../support/replication.js';
import { parseConfig } from '../../src/control/config.js';
import { COLUMNS } from '../support/ddl-queries.js';

async function assertSameColumns(pair: Pair, table: string): Promise<void> {
  const [source, target] = await Promise.all([texts(pair.src, COLUMNS, [table]), texts(pair.dst, COLUMNS, [table])]);
  assert.ok(source.length > 0);
  assert.deepEqual(target, source, `columns of ${table}`);
}

/** The distinct values of a column for the given ids, on one side. */
const valuesOf = (sql: Pair['src'], column: string, ids: string): Promise<string[]> =>
  texts(sql, `SELECT DISTINCT ${column}::text AS r FROM d WHERE id IN (${ids}) ORDER BY 1`);

describe('stable defaults on ADD COLUMN (now(), current_user, …)', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let base: Pair;

  before(async () => {
    base = await startPair(scope, { name: 'ddldef' });
  });
  after(() => scope.cleanup());

  it('existing rows get the source\'s value of now(), statement_timestamp(), current_user, current_setting(); new rows the expression', async () => {
    const pair = await databasePair(scope, base, 'ddl_now');
    await ddlBoth(pair, `CREATE TABLE d (id int PRIMARY KEY, v text);`);
    // The ALTER runs as another role than the target's, so current_user differs between the two.
    await pair.src.unsafe(`CREATE ROLE ddl_author; ALTER TABLE d OWNER TO ddl_author;
      INSERT INTO d SELECT g, 'copied ' || g FROM generate_series(1, 5) g`);
    const engine = await startStreaming(scope, pair, { name: pair.database, tables: ['public.d'], ddl: { capture: true } });
    await pair.src.unsafe(`INSERT INTO d SELECT g, 'streamed ' || g FROM generate_series(6, 8) g`);

    await pair.src.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL ROLE ddl_author`);
      // The session's own text forms must not leak into the value carried (06/12 is June 12 under MDY).
      await tx.unsafe(`SET LOCAL datestyle = 'SQL, DMY'; SET LOCAL timezone = 'Asia/Kolkata'`);
      await tx.unsafe(`INSERT INTO d VALUES (9, 'same transaction, before')`);
      await tx.unsafe(`ALTER TABLE d ADD COLUMN at timestamptz NOT NULL DEFAULT now()`);
      await tx.unsafe(`ALTER TABLE d ADD COLUMN ct timestamp DEFAULT current_timestamp, ADD COLUMN st timestamptz DEFAULT statement_timestamp()`);
      await tx.unsafe(`ALTER TABLE d ADD COLUMN who name DEFAULT current_user, ADD COLUMN app text DEFAULT current_setting('application_name')`);
      await tx.unsafe(`INSERT INTO d (id, v) VALUES (10, 'same transaction, after')`);
      await tx.unsafe(`SELECT pg_sleep(0.3)`);
    });
    await pair.src.unsafe(`INSERT INTO d (id, v) VALUES (11, 'next transaction'); UPDATE d SET v = v || '!' WHERE id IN (2, 7);`);
    await waitForCatchUp(pair, { engine });

    await assertTablesEqual(pair, 'public.d', { orderBy: 't.id' });
    await assertSameColumns(pair, 'public.d');
    // What the comparison rests on: one value of each on the source for the rows before the ALTER, and not the target's.
    const before = '1, 2, 3, 4, 5, 6, 7, 8, 9';
    for (const column of ['at', 'ct', 'st', 'who', 'app']) {
      const source = await valuesOf(pair.src, column, before);
      assert.equal(source.length, 1, `${column}: one value for every row that existed at the ALTER`);
      assert.deepEqual(await valuesOf(pair.dst, column, before), source, `${column} of the rows before the ALTER`);
    }
    assert.deepEqual(await valuesOf(pair.dst, 'who', before), ['ddl_author']);
    assert.deepEqual(await valuesOf(pair.dst, 'app', before), ['pgtide-test']);
    const [late] = await texts(pair.dst, `SELECT (max(applied_at) - (SELECT at FROM d WHERE id = 1) > interval '0.3 s')::text AS r FROM pgtide.apply_progress`);
    assert.equal(late, 'true', 'the target applied the change later than the source\'s now(): its own now() would have differed');

    // The expression stays the default on the target: a row written there gets the target's own value.
    await pair.dst.unsafe(`INSERT INTO d (id, v) VALUES (1000, 'target only')`);
    assert.deepEqual(await texts(pair.dst, `SELECT (at > (SELECT at FROM d WHERE id = 11))::text AS r FROM d WHERE id = 1000`), ['true']);
    await pair.dst.unsafe(`DELETE FROM d WHERE id = 1000`);

    // The column added, then the table rewritten by another change in the same transaction: each
    // command's message carries the table as it was after that command, so the value is the source's.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`ALTER TABLE d ADD COLUMN at2 timestamptz DEFAULT now()`);
      await tx.unsafe(`ALTER TABLE d ALTER COLUMN id TYPE bigint`);
      await tx.unsafe(`SELECT pg_sleep(0.3)`);
    });
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.d', { orderBy: 't.id' });
    await assertSameColumns(pair, 'public.d');
    await engine.stop();
  });

  it('a partitioned table: the value its partitions hold on the source, on every partition of the target', async () => {
    const pair = await databasePair(scope, base, 'ddl_now_parts');
    await ddlBoth(pair, `CREATE TABLE m (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
      CREATE TABLE m_low PARTITION OF m FOR VALUES FROM (0) TO (10); CREATE TABLE m_high PARTITION OF m FOR VALUES FROM (10) TO (20);`);
    await pair.src.unsafe(`INSERT INTO m SELECT g, g % 20 FROM generate_series(1, 40) g`);
    const engine = await startStreaming(scope, pair, { name: pair.database, tables: ['public.m'], ddl: { capture: true } });
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`ALTER TABLE m ADD COLUMN at timestamptz DEFAULT now()`);
      await tx.unsafe(`INSERT INTO m (id, k) VALUES (41, 1), (42, 11)`);
      await tx.unsafe(`SELECT pg_sleep(0.3)`);
    });
    await waitForCatchUp(pair, { engine });
    for (const leaf of ['public.m_low', 'public.m_high']) {
      await assertTablesEqual(pair, leaf, { orderBy: 't.id' });
      await assertSameColumns(pair, leaf);
    }
    assert.equal((await texts(pair.dst, `SELECT DISTINCT at::text AS r FROM m WHERE id <= 40`)).length, 1);
    await engine.stop();
  });

  it('pgtide ddl exec (no event triggers) carries the source\'s value of now() too', async () => {
    const pair = await databasePair(scope, base, 'ddl_now_exec');
    await ddlBoth(pair, `CREATE TABLE d (id int PRIMARY KEY, v text);`);
    await pair.src.unsafe(`INSERT INTO d SELECT g, 'v' || g FROM generate_series(1, 5) g`);
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.d'] })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    const file = writeConfigFile(scope, cliConfig(pair, { name: pair.database, tables: ['public.d'] }));
    const installed = await runCli(scope, ['ddl', 'install', '--exec-only', '--config', file]);
    assert.equal(installed.code, 0, installed.stderr);
    const ran = await runCli(scope, ['ddl', 'exec', '--config', file, `ALTER TABLE d ADD COLUMN at timestamptz DEFAULT now(); SELECT pg_sleep(0.3)`]);
    assert.equal(ran.code, 0, ran.stderr);
    await pair.src.unsafe(`INSERT INTO d (id, v) VALUES (6, 'after')`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.d', { orderBy: 't.id' });
    await assertSameColumns(pair, 'public.d');
    assert.equal((await valuesOf(pair.dst, 'at', '1, 2, 3, 4, 5')).length, 1);
    await engine.stop();
  });
});
