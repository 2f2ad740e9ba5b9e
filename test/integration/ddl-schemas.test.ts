/**
 * DDL replication of schemas: ALTER SCHEMA … RENAME TO of a schema holding a
 * replicated table, CREATE SCHEMA then a table in it (newTableSchemas), DROP
 * SCHEMA … CASCADE under ddl.destructive apply and pause. One cluster pair,
 * one database per case; rows before and after each change in the same
 * transaction, compared row for row.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TestScope, startPair, databasePair, ddlBoth, startEngine, waitForCatchUp, assertTablesEqual, texts,
  withTimeout, configInput, waitFor, type Pair,
} from '../support/replication.js';
import { parseConfig } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';

const SCHEMAS = `SELECT nspname AS r FROM pg_namespace WHERE nspname IN ('app', 'app2', 's', 'gone') ORDER BY 1`;
const STATE = `SELECT schema_name || '.' || table_name || ' ' || state AS r FROM pgtide.table_state WHERE table_name <> 'pgtide_test_marker' ORDER BY 1`;

describe('DDL replication: schemas', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let base: Pair;

  before(async () => {
    base = await startPair(scope, { name: 'ddlschema' });
  });
  after(() => scope.cleanup());

  it('ALTER SCHEMA … RENAME TO with rows before and after it in one transaction: the target renames the schema, the table state follows, later changes apply', async () => {
    const pair = await databasePair(scope, base, 'ddl_schema_rename');
    await ddlBoth(pair, `CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text); CREATE SEQUENCE app.seq; CREATE TABLE public.u (id int PRIMARY KEY, n bigint DEFAULT nextval('app.seq'))`);
    await pair.src.unsafe(`INSERT INTO app.t SELECT g, 'v' || g FROM generate_series(1, 10) g; INSERT INTO public.u (id) VALUES (1)`);
    const ddl = { capture: true, newTableSchemas: ['app', 'public'] };
    let engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['app.t', 'public.u'], ddl })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');

    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO app.t VALUES (11, 'before')`);
      await tx.unsafe(`UPDATE app.t SET v = 'changed before' WHERE id = 1`);
      await tx.unsafe(`ALTER SCHEMA app RENAME TO app2`);
      await tx.unsafe(`INSERT INTO app2.t VALUES (12, 'after')`);
      await tx.unsafe(`UPDATE app2.t SET v = 'changed after' WHERE id = 2`);
      await tx.unsafe(`DELETE FROM app2.t WHERE id = 3`);
      await tx.unsafe(`INSERT INTO public.u (id) VALUES (2)`);
    });
    // A transaction of rows only, right after the rename.
    await pair.src.unsafe(`INSERT INTO app2.t VALUES (20, 'next transaction'); UPDATE app2.t SET v = 'next' WHERE id = 4`);
    // A later change to the renamed table diffs against its renamed snapshot (a column, not a move back).
    await pair.src.unsafe(`ALTER TABLE app2.t ADD COLUMN w int DEFAULT 7; INSERT INTO app2.t VALUES (13, 'later', 8)`);
    // ALTER SCHEMA … OWNER TO is not replicated and sends nothing.
    await pair.src.unsafe(`CREATE ROLE schema_owner_${process.pid}; ALTER SCHEMA app2 OWNER TO schema_owner_${process.pid}; INSERT INTO app2.t VALUES (14, 'after owner', 9)`);
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    await waitFor('row 14', async () => ((await texts(pair.dst, `SELECT v AS r FROM app2.t WHERE id = 14`).catch(() => []))[0] === 'after owner' ? true : undefined));
    assert.ok(engine.error === undefined, `engine running, got ${String(engine.error)}`);
    await assertTablesEqual(pair, 'app2.t');
    await assertTablesEqual(pair, 'public.u');
    assert.deepEqual(await texts(pair.dst, SCHEMAS), ['app2']);
    assert.deepEqual(await texts(pair.dst, STATE), ['app2.t ready', 'public.u ready']);
    assert.deepEqual(await texts(pair.dst, `SELECT schema_name || '.' || table_name || ' ' || (snapshot->>'schema') AS r FROM pgtide.ddl_snapshot WHERE table_name = 't'`), ['app2.t app2']);
    // The default that names the sequence follows (the target's sequence moved with its schema).
    assert.deepEqual(await texts(pair.dst, `SELECT pg_get_expr(adbin, adrelid) AS r FROM pg_attrdef WHERE adrelid = 'public.u'::regclass`),
      await texts(pair.src, `SELECT pg_get_expr(adbin, adrelid) AS r FROM pg_attrdef WHERE adrelid = 'public.u'::regclass`));
    assert.deepEqual(await texts(pair.dst, `SELECT pg_get_userbyid(nspowner)::text AS r FROM pg_namespace WHERE nspname = 'app2'`), [await texts(pair.dst, `SELECT current_user::text AS r`).then((r) => r[0])], 'the owner is not replicated');
    await engine.stop();

    // Started again with newTableSchemas still naming app (and the table by its new name): app stands for
    // the renamed schema, so a table created in app2 joins.
    engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['app2.t', 'public.u'], ddl })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming after the restart');
    assert.deepEqual(await texts(pair.src, `SELECT schemas::text AS r FROM pgtide.ddl_scope`), ['{app2,public}']);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`CREATE TABLE app2.n (id int PRIMARY KEY, v text)`);
      await tx.unsafe(`INSERT INTO app2.n VALUES (1, 'new in app2'); INSERT INTO app2.t VALUES (15, 'with n')`);
    });
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    await assertTablesEqual(pair, 'app2.n');
    await assertTablesEqual(pair, 'app2.t');
    await engine.stop();
    await pair.src.unsafe(`DROP SCHEMA app2 CASCADE; DROP OWNED BY schema_owner_${process.pid}; DROP ROLE schema_owner_${process.pid}`).catch(() => undefined);
  });

  it('CREATE SCHEMA then a table in it (newTableSchemas): the target creates the schema before the table; a bare CREATE SCHEMA is not replicated', async () => {
    const pair = await databasePair(scope, base, 'ddl_schema_create');
    await ddlBoth(pair, `CREATE TABLE public.p (id int PRIMARY KEY, v text)`);
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.p'], ddl: { capture: true, newTableSchemas: ['public', 's'] } })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO public.p VALUES (1, 'before')`);
      await tx.unsafe(`CREATE SCHEMA s`);
      await tx.unsafe(`CREATE TABLE s.t (id int PRIMARY KEY, v text)`);
      await tx.unsafe(`INSERT INTO s.t VALUES (1, 'in s'), (2, 'in s too')`);
      await tx.unsafe(`INSERT INTO public.p VALUES (2, 'after')`);
    });
    // Nothing in scope uses this one.
    await pair.src.unsafe(`CREATE SCHEMA gone`);
    await pair.src.unsafe(`UPDATE s.t SET v = 'later' WHERE id = 2; INSERT INTO public.p VALUES (3, 'later')`);
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    assert.ok(engine.error === undefined, `engine running, got ${String(engine.error)}`);
    await assertTablesEqual(pair, 's.t');
    await assertTablesEqual(pair, 'public.p');
    assert.deepEqual(await texts(pair.dst, SCHEMAS), ['s']);
    assert.deepEqual(await texts(pair.dst, `SELECT pg_get_userbyid(nspowner)::text = current_user AS r FROM pg_namespace WHERE nspname = 's'`), ['true'], 'owned by pgtide\'s target role');
    assert.deepEqual(await texts(pair.dst, STATE), ['public.p ready', 's.t ready']);
    await engine.stop();
  });

  it('DROP SCHEMA … CASCADE: under ddl.destructive pause it stops naming the drop; under apply its tables and then the emptied schema are dropped and forgotten', async () => {
    const pair = await databasePair(scope, base, 'ddl_schema_drop');
    await ddlBoth(pair, `CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text); CREATE TABLE app.t2 (id int PRIMARY KEY); CREATE TABLE public.keep (id int PRIMARY KEY, v text)`);
    await pair.src.unsafe(`INSERT INTO app.t VALUES (1, 'one'); INSERT INTO app.t2 VALUES (1); INSERT INTO public.keep VALUES (1, 'one')`);
    const tables = ['app.t', 'app.t2', 'public.keep'];
    let engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables, ddl: { capture: true, destructive: 'pause' } })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO app.t VALUES (2, 'before the drop')`);
      await tx.unsafe(`INSERT INTO public.keep VALUES (2, 'before the drop')`);
      await tx.unsafe(`DROP SCHEMA app CASCADE`);
      await tx.unsafe(`INSERT INTO public.keep VALUES (3, 'after the drop')`);
    });
    await withTimeout(engine.done, 60_000, 'engine did not stop on the paused DROP SCHEMA');
    assert.ok(engine.error instanceof PgtideError && engine.error.code === 'DDL_PAUSED', `stopped with DDL_PAUSED, got ${String(engine.error)}`);
    assert.match(engine.error.message, /drop table "app"\."t2?".*DROP SCHEMA app CASCADE.*LSN [0-9A-F]+\/[0-9A-F]+/);
    // The batch rolled back: the target still has the schema, its tables and none of that transaction's rows.
    assert.deepEqual(await texts(pair.dst, SCHEMAS), ['app']);
    assert.deepEqual(await texts(pair.dst, `SELECT id::text AS r FROM public.keep ORDER BY id`), ['1']);

    engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.keep'], ddl: { capture: true, destructive: 'apply' } })));
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    await pair.src.unsafe(`INSERT INTO public.keep VALUES (4, 'later')`);
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    await waitFor('row 4', async () => ((await texts(pair.dst, `SELECT v AS r FROM public.keep WHERE id = 4`))[0] === 'later' ? true : undefined));
    assert.ok(engine.error === undefined, `engine running, got ${String(engine.error)}`);
    await assertTablesEqual(pair, 'public.keep');
    assert.deepEqual(await texts(pair.dst, SCHEMAS), []);
    assert.deepEqual(await texts(pair.dst, STATE), ['public.keep ready']);
    // The source's capture forgot them too: the next table named app.t would be a new one.
    assert.deepEqual(await texts(pair.src, `SELECT snapshot->>'schema' || '.' || (snapshot->>'name') AS r FROM pgtide.ddl_source_snapshot WHERE snapshot->>'name' <> 'pgtide_test_marker' ORDER BY 1`), ['public.keep']);
    assert.deepEqual(await texts(pair.src, `SELECT name AS r FROM pgtide.ddl_source_schema ORDER BY 1`), ['public']);
    await engine.stop();
  });
});
