/**
 * DDL replication end to end: capture by the source's event triggers (signed
 * logical messages), apply on the target as a barrier between the rows before
 * and after the change. One cluster pair, one database (and engine) per case.
 * Each case compares the tables row for row and the target's columns, types,
 * defaults, NOT NULL and indexes with the source's.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import postgres from 'postgres';
import {
  TestScope, startPair, databasePair, ddlBoth, startStreaming, startEngine, waitForCatchUp, assertTablesEqual, texts,
  capturingLogger, withTimeout, writeConfigFile, runCli, startCli, cliConfig, waitFor,
  type Pair, type RunningEngine,
} from '../support/replication.js';
import { parseConfig } from '../../src/control/config.js';
import { configInput } from '../support/replication.js';
import { installDdlCapture } from '../../src/source/ddl-capture.js';
import { PgtideError } from '../../src/core/errors.js';
import { COLUMNS } from '../support/ddl-queries.js';

const INDEXES = `SELECT indexdef AS r FROM pg_indexes WHERE schemaname || '.' || tablename = $1 ORDER BY indexname`;
/** NOT NULL constraints (PostgreSQL 18) are compared through the columns. */
const CONSTRAINTS = `SELECT conname || ' ' || pg_get_constraintdef(oid) AS r FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype <> 'n' ORDER BY conname`;

async function assertSameSchema(pair: Pair, table: string): Promise<void> {
  const [sc, tc, si, ti, sk, tk] = await Promise.all([COLUMNS, INDEXES, CONSTRAINTS].flatMap((q) => [texts(pair.src, q, [table]), texts(pair.dst, q, [table])]));
  assert.ok(sc!.length > 0, `${table} has columns on the source`);
  assert.deepEqual(tc, sc, `columns of ${table}`);
  assert.deepEqual(ti, si, `indexes of ${table}`);
  assert.deepEqual(tk, sk, `constraints of ${table}`);
}

describe('DDL replication', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let base: Pair;

  before(async () => {
    base = await startPair(scope, { name: 'ddl' });
  });
  after(() => scope.cleanup());

  async function streaming(pair: Pair, tables: string[], ddl: Record<string, unknown> = {}): Promise<RunningEngine> {
    return startStreaming(scope, pair, { name: pair.database, tables, ddl: { capture: true, ...ddl } });
  }

  it('applies column changes, indexes and a table rename in stream order, in one transaction with rows and in separate ones', async () => {
    const pair = await databasePair(scope, base, 'ddl_alter');
    await ddlBoth(pair, `CREATE TABLE items (id int PRIMARY KEY, a text, b int, c varchar(10));`);
    await pair.src.unsafe(`INSERT INTO items SELECT g, 'a' || g, g, 'c' || g FROM generate_series(1, 20) g`);
    const engine = await streaming(pair, ['public.items']);
    const catchUp = () => waitForCatchUp(pair, { engine });

    // Add a column with a default, rows before and after it in the same transaction.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO items VALUES (21, 'a21', 21, 'c21')`);
      await tx.unsafe(`ALTER TABLE items ADD COLUMN d int DEFAULT 7`);
      await tx.unsafe(`INSERT INTO items VALUES (22, 'a22', 22, 'c22', 70)`);
      await tx.unsafe(`UPDATE items SET d = 71 WHERE id = 1`);
    });
    // Rename in its own transaction, rows in the next.
    await pair.src.unsafe(`ALTER TABLE items RENAME COLUMN a TO a2`);
    await pair.src.unsafe(`INSERT INTO items (id, a2, b, c) VALUES (23, 'a23', 23, 'c23')`);
    await catchUp();
    await assertTablesEqual(pair, 'public.items');
    await assertSameSchema(pair, 'public.items');

    // Type changes (widening and to text), with rows that only fit the new types.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`UPDATE items SET b = b + 1 WHERE id <= 3`);
      await tx.unsafe(`ALTER TABLE items ALTER COLUMN b TYPE bigint`);
      await tx.unsafe(`INSERT INTO items (id, a2, b, c) VALUES (24, 'a24', 9000000000, 'c24')`);
      await tx.unsafe(`ALTER TABLE items ALTER COLUMN c TYPE text`);
      await tx.unsafe(`INSERT INTO items (id, a2, b, c) VALUES (25, 'a25', 25, repeat('long', 10))`);
    });
    // Defaults and NOT NULL, set and dropped, in one transaction and in separate ones.
    await pair.src.unsafe(`ALTER TABLE items ALTER COLUMN d SET DEFAULT 9`);
    await pair.src.unsafe(`INSERT INTO items (id, a2, b) VALUES (26, 'a26', 26)`);
    await pair.src.unsafe(`ALTER TABLE items ALTER COLUMN b SET NOT NULL`);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`ALTER TABLE items ALTER COLUMN a2 SET NOT NULL`);
      await tx.unsafe(`INSERT INTO items (id, a2, b) VALUES (27, 'a27', 27)`);
      await tx.unsafe(`ALTER TABLE items ALTER COLUMN a2 DROP NOT NULL`);
      await tx.unsafe(`INSERT INTO items (id, a2, b) VALUES (28, NULL, 28)`);
      await tx.unsafe(`ALTER TABLE items ALTER COLUMN c SET DEFAULT 'dflt'`);
    });
    await pair.src.unsafe(`ALTER TABLE items ALTER COLUMN c DROP DEFAULT`);
    // Indexes: one created and kept, one created and dropped.
    await pair.src.unsafe(`CREATE INDEX items_b ON items (b)`);
    await pair.src.unsafe(`CREATE UNIQUE INDEX items_a2 ON items (a2)`);
    await pair.src.unsafe(`DROP INDEX items_a2`);
    // Constraints: added in a transaction with rows, in their own, dropped; a no-op change emits nothing.
    await pair.src.unsafe(`ALTER TABLE items ADD CONSTRAINT items_b_pos CHECK (b > 0)`);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO items (id, a2, b) VALUES (31, 'a31', 31)`);
      await tx.unsafe(`ALTER TABLE items ADD CONSTRAINT items_a2_key UNIQUE (a2)`);
      await tx.unsafe(`UPDATE items SET a2 = 'a31b' WHERE id = 31`);
    });
    await pair.src.unsafe(`ALTER TABLE items ADD CONSTRAINT items_d_small CHECK (d < 1000)`);
    await pair.src.unsafe(`ALTER TABLE items DROP CONSTRAINT items_d_small`);
    await pair.src.unsafe(`ALTER TABLE items ALTER COLUMN b SET NOT NULL`);
    await catchUp();
    await assertTablesEqual(pair, 'public.items');
    await assertSameSchema(pair, 'public.items');

    // Drop a column between rows, then rename the table and keep writing to it.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`UPDATE items SET c = 'last' WHERE id = 2`);
      await tx.unsafe(`ALTER TABLE items DROP COLUMN c`);
      await tx.unsafe(`INSERT INTO items (id, a2, b) VALUES (29, 'a29', 29)`);
    });
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`ALTER TABLE items RENAME TO things`);
      await tx.unsafe(`INSERT INTO things (id, a2, b) VALUES (30, 'a30', 30)`);
    });
    await pair.src.unsafe(`UPDATE things SET d = 5 WHERE id = 4`);
    await pair.src.unsafe(`DELETE FROM things WHERE id = 5`);
    await catchUp();
    assert.equal((await texts(pair.dst, `SELECT to_regclass('public.items')::text AS r`))[0], 'null', 'the old name is gone on the target');
    await assertTablesEqual(pair, 'public.things');
    await assertSameSchema(pair, 'public.things');
    const states = await texts(pair.dst, `SELECT table_name || ':' || state AS r FROM pgtide.table_state WHERE table_name IN ('items', 'things')`);
    assert.deepEqual(states, ['things:ready']);
    assert.deepEqual(await texts(pair.dst, `SELECT reason AS r FROM pgtide.ddl_unhandled`), []);

    // CREATE INDEX CONCURRENTLY is built so on the target, beside the stream: a target transaction
    // that wrote to the table makes the build wait (a plain CREATE INDEX would hold the stream too).
    const blocker = pair.target.sql(pair.database, { max: 1 });
    scope.defer('end blocker', () => blocker.end({ timeout: 2 }));
    const held = await blocker.reserve();
    await held.unsafe(`BEGIN`);
    await held.unsafe(`UPDATE things SET b = b WHERE id = 1`);
    await pair.src.unsafe(`CREATE INDEX CONCURRENTLY things_conc ON things (a2)`);
    await pair.src.unsafe(`INSERT INTO things (id, a2, b) VALUES (40, 'a40', 40)`);
    await catchUp();
    const valid = `SELECT i.indisvalid::text AS r FROM pg_index i WHERE i.indexrelid = to_regclass('public.things_conc')`;
    assert.notDeepEqual(await texts(pair.dst, valid), ['true'], 'the build waits for the open target transaction, the stream does not');
    await held.unsafe(`ROLLBACK`);
    held.release();
    await waitFor('things_conc built and valid on the target', async () => ((await texts(pair.dst, valid))[0] === 'true' ? true : undefined), { timeoutMs: 30_000 });
    await assertTablesEqual(pair, 'public.things');
    await assertSameSchema(pair, 'public.things');
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM pgtide.ddl_deferred`), ['0']);
    await engine.stop();
  });

  it('each change of the core set, with rows before and after it in its own transaction and in separate transactions', async () => {
    const pair = await databasePair(scope, base, 'ddl_matrix');
    await ddlBoth(pair, `CREATE TABLE same_tx (id int PRIMARY KEY, a text, b int, c varchar(10)); CREATE TABLE sep_tx (id int PRIMARY KEY, a text, b int, c varchar(10));`);
    await pair.src.unsafe(`INSERT INTO same_tx (id, a, b, c) SELECT g, 'a', g, 'c' FROM generate_series(1, 5) g; INSERT INTO sep_tx SELECT * FROM same_tx`);
    const engine = await streaming(pair, ['public.same_tx', 'public.sep_tx']);
    // {t}: the table; {n}: a key unused so far. Rows touch only id and b, which every step keeps.
    const steps = [
      `ALTER TABLE {t} ADD COLUMN d int DEFAULT 7`,
      `ALTER TABLE {t} RENAME COLUMN a TO a2`,
      `ALTER TABLE {t} ALTER COLUMN b TYPE bigint`,
      `ALTER TABLE {t} ALTER COLUMN d SET DEFAULT 9`,
      `ALTER TABLE {t} ALTER COLUMN d DROP DEFAULT`,
      `ALTER TABLE {t} ALTER COLUMN b SET NOT NULL`,
      `ALTER TABLE {t} ALTER COLUMN b DROP NOT NULL`,
      `CREATE INDEX {t}_b ON {t} (b)`,
      `DROP INDEX {t}_b`,
      `ALTER TABLE {t} DROP COLUMN c`,
      `ALTER TABLE {t} ADD COLUMN g bigint GENERATED ALWAYS AS (b * 2) STORED`,
      `CREATE TABLE {t}_new (id int PRIMARY KEY, v text)`,
      `DROP TABLE {t}_new`,
      `ALTER TABLE {t} RENAME TO {t}_r`,
    ];
    for (const table of ['same_tx', 'sep_tx']) {
      let name = table;
      let n = 100;
      for (const step of steps) {
        n += 10;
        const ddl = step.replace(/\{t\}/g, name);
        const renamed = /RENAME TO/.test(step) ? `${name}_r` : name;
        const extra = /CREATE TABLE/.test(step) ? [`INSERT INTO ${name}_new VALUES (${n}, 'x')`] : [];
        const statements = [
          `INSERT INTO ${name} (id, b) VALUES (${n}, ${n})`,
          `UPDATE ${name} SET b = b + 1 WHERE id = ${n - 10}`,
          ...(/DROP TABLE/.test(step) ? [`INSERT INTO ${name}_new VALUES (${n}, 'before drop')`] : []),
          ddl,
          ...extra,
          `INSERT INTO ${renamed} (id, b) VALUES (${n + 1}, ${n + 1})`,
          `UPDATE ${renamed} SET b = b * 2 WHERE id = ${n}`,
          `DELETE FROM ${renamed} WHERE id = ${n - 9}`,
        ];
        if (table === 'same_tx') await pair.src.begin(async (tx) => { for (const sql of statements) await tx.unsafe(sql); });
        else for (const sql of statements) await pair.src.unsafe(sql);
        name = renamed;
        if (/CREATE TABLE/.test(step)) {
          await waitForCatchUp(pair, { engine });
          await assertTablesEqual(pair, `public.${name}_new`);
          await assertSameSchema(pair, `public.${name}_new`);
        }
      }
      await waitForCatchUp(pair, { engine });
      await assertTablesEqual(pair, `public.${name}`);
      await assertSameSchema(pair, `public.${name}`);
      assert.equal((await texts(pair.dst, `SELECT to_regclass('public.${table}_new')::text AS r`))[0], 'null');
    }
    assert.deepEqual(await texts(pair.dst, `SELECT reason AS r FROM pgtide.ddl_unhandled`), []);
    await engine.stop();
  });

  it('a change inside a large transaction applied while it streams, and inside one buffered until commit', async () => {
    const pair = await databasePair(scope, base, 'ddl_streamed');
    await ddlBoth(pair, `CREATE TABLE big (id int PRIMARY KEY, pad text);`);
    const engine = await streaming(pair, ['public.big']);
    // Well past logical_decoding_work_mem (64kB in the test clusters): the source streams it.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 3000) g`);
      await tx.unsafe(`ALTER TABLE big ADD COLUMN n int, ALTER COLUMN pad SET DEFAULT 'p'`);
      await tx.unsafe(`ALTER TABLE big RENAME COLUMN pad TO filler`);
      await tx.unsafe(`INSERT INTO big (id, n) SELECT g, g FROM generate_series(3001, 6000) g`);
      await tx.unsafe(`UPDATE big SET n = -id WHERE id <= 10`);
    });
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.big');
    await assertSameSchema(pair, 'public.big');
    await engine.stop();
    // The same through the buffered path (streamedApply off: the transaction is replayed at commit).
    const buffered = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.big'], ddl: { capture: true }, apply: { streamedApply: false } })));
    await withTimeout(buffered.streaming, 120_000, 'engine did not reach streaming');
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big (id, n) SELECT g, g FROM generate_series(6001, 9000) g`);
      await tx.unsafe(`ALTER TABLE big ALTER COLUMN n TYPE bigint, ADD COLUMN m text DEFAULT 'm'`);
      await tx.unsafe(`INSERT INTO big (id, n, m) SELECT g, g * 10000000000, 'mm' FROM generate_series(9001, 12000) g`);
    });
    await waitForCatchUp(pair, { engine: buffered });
    await assertTablesEqual(pair, 'public.big');
    await assertSameSchema(pair, 'public.big');
    await buffered.stop();
  });

  it('kill -9 while a change is applied on the target but not committed: after a restart it applies once, with its rows', async () => {
    const pair = await databasePair(scope, base, 'ddl_kill');
    await ddlBoth(pair, `CREATE TABLE k (id int PRIMARY KEY, v text)`);
    const file = writeConfigFile(scope, cliConfig(pair, { name: pair.database, tables: ['public.k'], ddl: { capture: true } }));
    let cli = startCli(scope, ['start', '--config', file]);
    await cli.waitForStderr(/streaming started/, 120_000);
    await pair.src.unsafe(`INSERT INTO k VALUES (1, 'one')`);
    await waitForCatchUp(pair, { cli });
    // A target session holds a lock the change needs: the batch stops inside the ALTER, after the row before it.
    const holder = pair.target.sql(pair.database, { max: 1 });
    scope.defer('end lock holder', () => holder.end({ timeout: 2 }));
    const lock = await holder.reserve();
    await lock.unsafe(`BEGIN`);
    await lock.unsafe(`LOCK TABLE k IN ACCESS SHARE MODE`);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO k VALUES (2, 'two')`);
      await tx.unsafe(`ALTER TABLE k ADD COLUMN n int DEFAULT 5`);
      await tx.unsafe(`INSERT INTO k VALUES (3, 'three', 3)`);
    });
    const applySessions = `SELECT count(*)::text AS r FROM pg_stat_activity WHERE application_name = 'pgtide-apply' AND datname = current_database()`;
    await waitFor('the apply session waiting for the lock', async () => ((await texts(pair.dst, `${applySessions} AND wait_event_type = 'Lock'`))[0] === '1' ? true : undefined), { timeoutMs: 30_000 });
    cli.kill('SIGKILL');
    await cli.exited;
    await lock.unsafe(`ROLLBACK`);
    lock.release();
    await waitFor('the killed apply session gone', async () => ((await texts(pair.dst, applySessions))[0] === '0' ? true : undefined), { timeoutMs: 30_000 });
    assert.deepEqual(await texts(pair.dst, `SELECT attname AS r FROM pg_attribute WHERE attrelid = 'k'::regclass AND attname = 'n'`), [], 'the change rolled back with its batch');
    assert.deepEqual(await texts(pair.dst, `SELECT id::text AS r FROM k ORDER BY id`), ['1'], 'so did the row before it');

    cli = startCli(scope, ['start', '--config', file]);
    await cli.waitForStderr(/streaming started/, 120_000);
    await pair.src.unsafe(`INSERT INTO k VALUES (4, 'four', 4)`);
    await waitForCatchUp(pair, { cli, timeoutMs: 60_000 });
    await assertTablesEqual(pair, 'public.k');
    await assertSameSchema(pair, 'public.k');
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM pgtide.ddl_snapshot WHERE table_name = 'k'`), ['1']);
    cli.kill('SIGTERM');
    await cli.exited;
  });

  it('creates a new table on the target and replicates it from its creating transaction on; drops a table', async () => {
    const pair = await databasePair(scope, base, 'ddl_create');
    await ddlBoth(pair, `CREATE TABLE keep (id int PRIMARY KEY, v text); CREATE TABLE doomed (id int PRIMARY KEY, v text);`);
    const engine = await streaming(pair, ['public.keep', 'public.doomed']);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`CREATE TABLE fresh (id int PRIMARY KEY, v text NOT NULL DEFAULT 'x', n numeric(10,2))`);
      await tx.unsafe(`INSERT INTO fresh (id, n) SELECT g, g / 3.0 FROM generate_series(1, 10) g`);
      await tx.unsafe(`INSERT INTO keep VALUES (1, 'k1')`);
    });
    await pair.src.unsafe(`INSERT INTO fresh (id, v) VALUES (11, 'eleven')`);
    await pair.src.unsafe(`UPDATE fresh SET v = 'upd' WHERE id <= 3`);
    await pair.src.unsafe(`DELETE FROM fresh WHERE id = 4`);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO doomed VALUES (1, 'gone')`);
      await tx.unsafe(`DROP TABLE doomed`);
      await tx.unsafe(`INSERT INTO keep VALUES (2, 'k2')`);
    });
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.fresh');
    await assertTablesEqual(pair, 'public.keep');
    await assertSameSchema(pair, 'public.fresh');
    assert.equal((await texts(pair.dst, `SELECT to_regclass('public.doomed')::text AS r`))[0], 'null', 'doomed is dropped on the target');
    assert.deepEqual(await texts(pair.src, `SELECT pubname || ':' || tablename AS r FROM pg_publication_tables WHERE tablename = 'fresh'`), ['ddl_create_pub:fresh'], 'fresh joined the publication');
    assert.deepEqual(await texts(pair.dst, `SELECT table_name || ':' || state AS r FROM pgtide.table_state WHERE table_name IN ('fresh', 'doomed')`), ['fresh:ready']);
    await engine.stop();
  });

  it('applies each change of a multi-statement query string and of a DO block exactly once; enum values', async () => {
    const pair = await databasePair(scope, base, 'ddl_multi');
    await ddlBoth(pair, `CREATE TABLE m (id int PRIMARY KEY, v text); CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE moods (id int PRIMARY KEY, feel mood);
      CREATE SCHEMA app; CREATE TYPE app.level AS ENUM ('lo', 'hi');`);
    // Pre-created on the target: the source's ADD COLUMN must not fail on it.
    await pair.dst.unsafe(`ALTER TABLE m ADD COLUMN x int`);
    const engine = await streaming(pair, ['public.m', 'public.moods']);
    await pair.src.unsafe(`INSERT INTO m VALUES (1, 'one'); ALTER TABLE m ADD COLUMN x int; INSERT INTO m VALUES (2, 'two', 2); ALTER TABLE m RENAME COLUMN x TO y; INSERT INTO m VALUES (3, 'three', 3); UPDATE m SET y = 10 WHERE id = 1;`);
    await pair.src.unsafe(`DO $$ BEGIN
      ALTER TABLE m ADD COLUMN z text DEFAULT 'q';
      INSERT INTO m VALUES (4, 'four', 4, 'zz');
      ALTER TABLE m ALTER COLUMN z SET NOT NULL;
      EXECUTE 'ALTER TABLE m RENAME COLUMN v TO w';
      INSERT INTO m VALUES (5, 'five', 5, 'z5');
    END $$`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.m');
    await assertSameSchema(pair, 'public.m');
    const [count] = await texts(pair.dst, `SELECT count(*)::text AS r FROM m`);
    assert.equal(count, '5');

    // Unqualified names under a changed search_path, then the table moves to another schema.
    await pair.src.unsafe(`SET search_path = app, public; ALTER TABLE m ADD COLUMN lvl level DEFAULT 'hi'; INSERT INTO m (id, w, z) VALUES (6, 'six', 'z6'); RESET search_path;`);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`ALTER TABLE m SET SCHEMA app`);
      await tx.unsafe(`INSERT INTO app.m (id, w, z, lvl) VALUES (7, 'seven', 'z7', 'lo')`);
    });
    await pair.src.unsafe(`UPDATE app.m SET lvl = 'lo' WHERE id = 1`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'app.m');
    await assertSameSchema(pair, 'app.m');
    assert.deepEqual(await texts(pair.dst, `SELECT schema_name || '.' || table_name AS r FROM pgtide.table_state WHERE table_name = 'm'`), ['app.m']);

    // Enum values: added between and after existing ones, and used by the next transactions.
    await pair.src.unsafe(`INSERT INTO moods VALUES (1, 'ok')`);
    await pair.src.unsafe(`ALTER TYPE mood ADD VALUE 'meh' BEFORE 'sad'`);
    await pair.src.unsafe(`INSERT INTO moods VALUES (2, 'meh')`);
    await pair.src.unsafe(`ALTER TYPE mood ADD VALUE 'glad'; ALTER TYPE mood ADD VALUE 'wry' AFTER 'ok'`);
    await pair.src.unsafe(`INSERT INTO moods VALUES (3, 'glad'), (4, 'wry'), (5, 'sad')`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.moods');
    const labels = `SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) AS r FROM pg_enum WHERE enumtypid = 'mood'::regtype`;
    assert.deepEqual(await texts(pair.dst, labels), await texts(pair.src, labels));
    assert.deepEqual(await texts(pair.dst, `SELECT string_agg(feel::text, ',' ORDER BY feel) AS r FROM moods`), ['ok,wry,meh,sad,glad']);
    assert.deepEqual(await texts(pair.dst, `SELECT reason AS r FROM pgtide.ddl_unhandled`), []);
    await engine.stop();
  });

  it('refuses a forged pgtide.ddl message, logs it and goes on; DDL applied on the target is not captured there again', async () => {
    const pair = await databasePair(scope, base, 'ddl_forged');
    await ddlBoth(pair, `CREATE TABLE f (id int PRIMARY KEY, v text, keep int);`);
    await pair.src.unsafe(`CREATE ROLE mallory LOGIN PASSWORD 'mallory-pw'; GRANT ALL ON f TO mallory;`);
    const malloryUrl = (() => { const u = new URL(pair.sourceUrl); u.username = 'mallory'; u.password = 'mallory-pw'; return u.toString(); })();
    const mallory = postgres(malloryUrl, { max: 1, onnotice: () => {} });
    scope.defer('end mallory', () => mallory.end({ timeout: 2 }));

    // Without a superuser, install names the alternative.
    await assert.rejects(installDdlCapture(mallory, { publications: ['ddl_forged_pub'], newTableSchemas: [] }),
      (error: unknown) => error instanceof PgtideError && error.code === 'PERMISSION_DENIED' && /superuser/.test(error.message) && /additive only/.test(error.message));

    // The target captures too (as in two-way replication), for its own publication of f.
    await pair.dst.unsafe(`CREATE PUBLICATION target_pub FOR TABLE f`);
    await installDdlCapture(pair.dst, { publications: ['target_pub'], newTableSchemas: [] });
    const targetSnapshot = () => texts(pair.dst, `SELECT snapshot::text AS r FROM pgtide.ddl_source_snapshot WHERE table_oid = 'public.f'::regclass`);
    const snapshotBefore = await targetSnapshot();
    assert.equal(snapshotBefore.length, 1);

    const { lines, logger } = capturingLogger();
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.f'], ddl: { capture: true } })), {}, logger);
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');

    // A payload that would drop column "keep", under a signature made with a wrong key.
    const [body] = await pair.src.unsafe<{ body: string }[]>(`SELECT jsonb_build_object('v', 1, 'event', 'ddl_command_end', 'tag', 'ALTER TABLE', 'statement', 'ALTER TABLE f DROP COLUMN keep', 'search_path', 'public', 'objects', '[]'::jsonb,
      'tables', jsonb_build_array(jsonb_build_object('oid', 'f'::regclass::oid::bigint, 'created', false, 'before', pgtide.ddl_table_snapshot('f'::regclass),
        'after', jsonb_set(pgtide.ddl_table_snapshot('f'::regclass), '{columns}', (pgtide.ddl_table_snapshot('f'::regclass)->'columns') - 2))))::text AS body`);
    await mallory.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO f VALUES (1, 'by mallory', 1)`);
      await tx.unsafe(`SELECT pg_logical_emit_message(true, 'pgtide.ddl', encode(sha256('wrong'::bytea), 'hex') || ' ' || $1)`, [body!.body]);
      await tx.unsafe(`SELECT pg_logical_emit_message(true, 'pgtide.ddl', 'no signature at all')`);
      await tx.unsafe(`INSERT INTO f VALUES (2, 'after', 2)`);
    });
    // A real change, applied on the target by pgtide (replica role: the target's trigger must not fire).
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`ALTER TABLE f ADD COLUMN w int`);
      await tx.unsafe(`INSERT INTO f VALUES (3, 'three', 3, 33)`);
    });
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.f');
    await assertSameSchema(pair, 'public.f');
    assert.deepEqual(await texts(pair.dst, `SELECT status || ':' || reason AS r FROM pgtide.ddl_unhandled ORDER BY ordinal`), ['forged:bad signature', 'forged:unsigned']);
    const alerts = lines.map((l) => JSON.parse(l) as { level: number; code?: string }).filter((l) => l.code === 'DDL_FORGED');
    assert.equal(alerts.length, 2);
    assert.ok(alerts.every((a) => a.level === 50), 'forged messages are logged at ERROR level');

    assert.deepEqual(await targetSnapshot(), snapshotBefore, 'the DDL pgtide applied on the target did not fire the target\'s capture');
    // Control: a DDL run on the target by a normal session does fire it.
    await pair.dst.unsafe(`ALTER TABLE f ADD COLUMN local_only int`);
    assert.notDeepEqual(await targetSnapshot(), snapshotBefore, 'a local DDL on the target is captured (the check above can fail)');
    await engine.stop();
  });

  it('without capture: adds a column of a built-in type the source sends; stops with COLUMN_MISMATCH for an enum column', async () => {
    const pair = await databasePair(scope, base, 'ddl_nocapture');
    await ddlBoth(pair, `CREATE TABLE n (id int PRIMARY KEY, v text); CREATE TYPE mood AS ENUM ('ok', 'sad');`);
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.n'] })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO n VALUES (1, 'one')`);
      await tx.unsafe(`ALTER TABLE n ADD COLUMN amount numeric(8,2), ADD COLUMN tags text[]`);
      await tx.unsafe(`INSERT INTO n VALUES (2, 'two', 12.5, '{a,b}')`);
    });
    await pair.src.unsafe(`UPDATE n SET amount = 1.25 WHERE id = 1`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.n');
    assert.deepEqual(await texts(pair.dst, COLUMNS, ['public.n']), ['id integer not null', 'v text', 'amount numeric(8,2)', 'tags text[]']);
    await pair.src.unsafe(`ALTER TABLE n ADD COLUMN m mood; INSERT INTO n VALUES (3, 'three', NULL, NULL, 'ok');`);
    await withTimeout(engine.done, 60_000, 'engine did not stop on the enum column');
    assert.ok(engine.error instanceof PgtideError && engine.error.code === 'COLUMN_MISMATCH', `stopped with COLUMN_MISMATCH, got ${String(engine.error)}`);
    assert.match(engine.error.message, /column "m" of "public"\."n"/);
  });

  it('pgtide ddl exec (no event triggers) applies a rename and an added column once, in order with the rows', async () => {
    const pair = await databasePair(scope, base, 'ddl_exec');
    await ddlBoth(pair, `CREATE TABLE e (id int PRIMARY KEY, v text);`);
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.e'] })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    const file = writeConfigFile(scope, cliConfig(pair, { name: pair.database, tables: ['public.e'] }));
    const installed = await runCli(scope, ['ddl', 'install', '--exec-only', '--config', file]);
    assert.equal(installed.code, 0, installed.stderr);
    assert.deepEqual(await texts(pair.src, `SELECT evtname AS r FROM pg_event_trigger`), [], 'no event trigger was installed');
    await pair.src.unsafe(`INSERT INTO e VALUES (1, 'one')`);
    const ran = await runCli(scope, ['ddl', 'exec', '--config', file, 'ALTER TABLE e RENAME COLUMN v TO w; ALTER TABLE e ADD COLUMN n int DEFAULT 3']);
    assert.equal(ran.code, 0, ran.stderr);
    await pair.src.unsafe(`INSERT INTO e VALUES (2, 'two', 4); UPDATE e SET w = 'uno' WHERE id = 1;`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.e');
    await assertSameSchema(pair, 'public.e');
    await engine.stop();
    const removed = await runCli(scope, ['ddl', 'uninstall', '--config', file]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(await texts(pair.src, `SELECT (to_regproc('pgtide.ddl_emit') IS NULL AND to_regclass('pgtide.ddl_key') IS NULL)::text AS r`), ['true']);
  });

  it('policies: a destructive change paused until `pgtide ddl skip`, a failing one stops naming statement, table and LSN', async () => {
    const pair = await databasePair(scope, base, 'ddl_policy');
    await ddlBoth(pair, `CREATE TABLE p (id int PRIMARY KEY, v text, old int);`);
    // Present only on the target: the source's CREATE INDEX of the same name fails there.
    await pair.dst.unsafe(`CREATE INDEX p_v ON p (id)`);
    const file = writeConfigFile(scope, cliConfig(pair, { name: pair.database, tables: ['public.p'], ddl: { capture: true, destructive: 'pause' } }));
    let engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.p'], ddl: { capture: true, destructive: 'pause' } })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    await pair.src.unsafe(`INSERT INTO p VALUES (1, 'one', 1)`);
    await pair.src.unsafe(`ALTER TABLE p DROP COLUMN old`);
    await pair.src.unsafe(`INSERT INTO p VALUES (2, 'two')`);
    await withTimeout(engine.done, 60_000, 'engine did not stop on the paused DDL');
    assert.ok(engine.error instanceof PgtideError && engine.error.code === 'DDL_PAUSED', `stopped with DDL_PAUSED, got ${String(engine.error)}`);
    assert.match(engine.error.message, /drop column old on "public"\."p".*ALTER TABLE p DROP COLUMN old.*LSN [0-9A-F]+\/[0-9A-F]+/);
    const skipped = await runCli(scope, ['ddl', 'skip', '--config', file]);
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.match(skipped.stdout, /will skip DDL #1/);

    await pair.src.unsafe(`CREATE INDEX p_v ON p (v)`);
    await pair.src.unsafe(`INSERT INTO p VALUES (3, 'three')`);
    engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.p'], ddl: { capture: true, destructive: 'pause' } })));
    await withTimeout(engine.done, 120_000, 'engine did not stop on the failing DDL');
    assert.ok(engine.error instanceof PgtideError && engine.error.code === 'DDL_FAILED', `stopped with DDL_FAILED, got ${String(engine.error)}`);
    assert.match(engine.error.message, /CREATE INDEX p_v ON p \(v\).*"public"\."p".*LSN [0-9A-F]+\/[0-9A-F]+/);
    // Rows before the failed change may be rolled back with its batch; nothing after it is applied.
    assert.deepEqual(await texts(pair.dst, `SELECT id::text AS r FROM p WHERE id = 3`), []);
    assert.equal((await runCli(scope, ['ddl', 'skip', '--config', file])).code, 0);
    await pair.dst.unsafe(`DROP INDEX p_v`);
    engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.p'], ddl: { capture: true, destructive: 'pause' } })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    await waitForCatchUp(pair, { engine });
    await waitFor('row 3', async () => ((await texts(pair.dst, `SELECT v AS r FROM p WHERE id = 3`))[0] === 'three' ? true : undefined));
    assert.deepEqual(await texts(pair.dst, `SELECT status AS r FROM pgtide.ddl_unhandled ORDER BY commit_lsn`), ['skipped', 'skipped']);
    // The skipped drop: the column stays on the target (NULL in rows written after it); every row arrived.
    assert.deepEqual(await texts(pair.dst, `SELECT id || ':' || v || ':' || coalesce(old::text, '-') AS r FROM p ORDER BY id`), ['1:one:1', '2:two:-', '3:three:-']);
    assert.deepEqual(await texts(pair.dst, `SELECT indexname AS r FROM pg_indexes WHERE tablename = 'p' AND indexname = 'p_v'`), [], 'the skipped index is not created');
    await engine.stop();

    // destructive: skip applies the rest of a change without the narrowing part; onError: skip
    // rolls a failing change back to its savepoint and goes on. Both are recorded.
    await pair.dst.unsafe(`CREATE INDEX p_w ON p (id)`);
    engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.p'], ddl: { capture: true, destructive: 'skip', onError: 'skip' } })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    await pair.src.unsafe(`ALTER TABLE p ALTER COLUMN v TYPE varchar(5), ADD COLUMN k int DEFAULT 1`);
    await pair.src.unsafe(`CREATE INDEX p_w ON p (v)`);
    await pair.src.unsafe(`INSERT INTO p VALUES (4, 'four', 4)`);
    await waitForCatchUp(pair, { engine });
    assert.deepEqual(await texts(pair.dst, `SELECT id || ':' || v || ':' || k AS r FROM p WHERE id = 4`), ['4:four:4']);
    assert.deepEqual(await texts(pair.dst, `SELECT format_type(atttypid, atttypmod) AS r FROM pg_attribute WHERE attrelid = 'p'::regclass AND attname = 'v'`), ['text'], 'the narrowing type change was skipped');
    const policy = await texts(pair.dst, `SELECT reason AS r FROM pgtide.ddl_unhandled WHERE status = 'policy' ORDER BY commit_lsn`);
    assert.equal(policy.length, 2);
    assert.match(policy[0]!, /ddl\.destructive = skip: not applied: change type of v from text to character varying\(5\)/);
    assert.match(policy[1]!, /ddl\.onError = skip: create index p_w failed on the target: .*already exists/);
    await engine.stop();
  });
});
