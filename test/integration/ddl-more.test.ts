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
  capturingLogger, withTimeout, configInput, type Pair,
} from '../support/replication.js';
import { parseConfig } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';

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
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    await assertTablesEqual(pair, 'public.r');
    const recopied = await texts(pair.dst, SYNC('r'));
    assert.match(recopied[0]!, /^ready /);
    assert.notDeepEqual(recopied, copiedAt, 'r was copied again under a new sync LSN');

    // An identity column added to the filled table: the source numbers the rows in its order.
    await pair.src.unsafe(`UPDATE r SET v = v || '!' WHERE id % 7 = 0`);
    await pair.src.unsafe(`ALTER TABLE r ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY`);
    await pair.src.unsafe(`INSERT INTO r (id, v) VALUES (54, 'numbered')`);
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    await assertTablesEqual(pair, 'public.r');
    assert.notDeepEqual(await texts(pair.dst, SYNC('r')), recopied, 'r was copied again for the identity column');
    await assertTablesEqual(pair, 'public.e');
    const notes = lines.filter((l) => l.includes('copied again from a new snapshot'));
    assert.equal(notes.length, 2, 'one re-copy per volatile rewrite, none for the stable default or the empty table');
    assert.equal(engine.finished, false, 'the engine kept streaming');
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
