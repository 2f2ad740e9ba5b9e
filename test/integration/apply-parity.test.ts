/**
 * Parity with PostgreSQL's built-in subscriber (issue 11): each row change
 * must leave the target as the built-in apply worker would. Each case runs in
 * its own database with its own engine, so a case that stops apply cannot
 * hide the others.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import {
  TestScope, startPair, databasePair, ddlBoth, startStreaming, startEngine, configInput, capturingLogger, withTimeout,
  waitForCatchUp, assertTablesEqual, texts, type Pair, type RunningEngine,
} from '../support/replication.js';

describe('parity with the built-in subscriber', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;

  before(async () => { pair = await startPair(scope, { name: 'parity' }); });
  after(() => scope.cleanup());

  async function isolated(database: string, ddl: { both?: string; source?: string; target?: string }, body: (p: Pair, e: RunningEngine) => Promise<void>): Promise<void> {
    const p = await databasePair(scope, pair, database);
    if (ddl.both) await ddlBoth(p, ddl.both);
    if (ddl.source) await p.src.unsafe(ddl.source);
    if (ddl.target) await p.dst.unsafe(ddl.target);
    const e = await startStreaming(scope, p, { name: database });
    try {
      await body(p, e);
    } finally {
      await e.stop().catch(() => {});
    }
  }

  it('applies inserts, deletes and TRUNCATE to a table with zero columns', () => isolated('zero_columns', {
    both: `CREATE TABLE t0 (); ALTER TABLE t0 REPLICA IDENTITY FULL;`,
  }, async (p, e) => {
    await p.src.unsafe(`INSERT INTO t0 DEFAULT VALUES`);
    await p.src.unsafe(`INSERT INTO t0 SELECT FROM generate_series(1, 4)`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    assert.deepEqual(await texts(p.dst, `SELECT count(*)::text AS r FROM t0`), ['5']);
    await p.src.unsafe(`DELETE FROM t0 WHERE ctid = (SELECT min(ctid) FROM t0)`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    assert.deepEqual(await texts(p.dst, `SELECT count(*)::text AS r FROM t0`), ['4']);
    await p.src.unsafe(`TRUNCATE t0`);
    await p.src.unsafe(`INSERT INTO t0 DEFAULT VALUES`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    assert.deepEqual(await texts(p.dst, `SELECT count(*)::text AS r FROM t0`), ['1']);
  }));

  it('takes an unchanged out-of-line key from the old key tuple', () => isolated('toast_key', {
    both: `
      CREATE TABLE tk (k text NOT NULL, v int);
      ALTER TABLE tk ALTER COLUMN k SET STORAGE EXTERNAL;
      CREATE UNIQUE INDEX tk_k ON tk (k);
      ALTER TABLE tk REPLICA IDENTITY USING INDEX tk_k;`,
  }, async (p, e) => {
    // 2,600 bytes with STORAGE EXTERNAL: stored out of line, uncompressed.
    await p.src.unsafe(`INSERT INTO tk VALUES (repeat('k', 2600), 1), (repeat('j', 2600), 1)`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    await p.src.unsafe(`UPDATE tk SET v = 2 WHERE k = repeat('k', 2600)`);
    // Twice in one transaction: the second change folds onto the first (net effect).
    await p.src.begin(async (tx) => {
      await tx.unsafe(`UPDATE tk SET v = 3 WHERE k = repeat('j', 2600)`);
      await tx.unsafe(`UPDATE tk SET v = 4 WHERE k = repeat('j', 2600)`);
    });
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    await assertTablesEqual(p, 'tk', { orderBy: 't.k' });
    assert.deepEqual(await texts(p.dst, `SELECT v::text AS r FROM tk ORDER BY k DESC`), ['2', '4']);
  }));

  it('writes the whole new row, so an equal key takes the source spelling', () => isolated('spelling', {
    both: `
      CREATE TABLE sk (k numeric PRIMARY KEY, v int);
      CREATE TABLE sf (k numeric, v int);
      ALTER TABLE sf REPLICA IDENTITY FULL;`,
  }, async (p, e) => {
    await p.src.unsafe(`INSERT INTO sk VALUES (1.0, 0), (2.0, 0); INSERT INTO sf VALUES (1.0, 0)`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    // The target holds equal keys spelled differently, as after a restore or a manual fix.
    await p.dst.unsafe(`UPDATE sk SET k = 1.00 WHERE k = 1; UPDATE sk SET k = 2.00 WHERE k = 2; UPDATE sf SET k = 1.00`);
    await p.src.unsafe(`UPDATE sk SET v = 1 WHERE k = 1`);
    await p.src.unsafe(`UPDATE sf SET v = 1`);
    // Folded: two updates of one key in one transaction.
    await p.src.begin(async (tx) => {
      await tx.unsafe(`UPDATE sk SET v = 5 WHERE k = 2`);
      await tx.unsafe(`UPDATE sk SET v = 6 WHERE k = 2`);
    });
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    assert.deepEqual(await texts(p.dst, `SELECT k::text || ':' || v AS r FROM sk ORDER BY k`), ['1.0:1', '2.0:6']);
    assert.deepEqual(await texts(p.dst, `SELECT k::text || ':' || v AS r FROM sf`), ['1.0:1']);
  }));

  it('changes one row of a partitioned target under REPLICA IDENTITY FULL', () => isolated('partitioned', {
    source: `CREATE TABLE pt (k int, v text); ALTER TABLE pt REPLICA IDENTITY FULL;`,
    target: `
      CREATE TABLE pt (k int, v text) PARTITION BY RANGE (k);
      CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (10);
      CREATE TABLE pt_2 PARTITION OF pt FOR VALUES FROM (10) TO (20);`,
  }, async (p, e) => {
    // Each partition's first row has ctid (0,1).
    await p.src.unsafe(`INSERT INTO pt VALUES (1, 'a'), (11, 'b')`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    assert.deepEqual(await texts(p.dst, `SELECT ctid::text AS r FROM pt ORDER BY k`), ['(0,1)', '(0,1)']);
    await p.src.unsafe(`UPDATE pt SET v = 'c' WHERE k = 11`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    await assertTablesEqual(p, 'pt', { orderBy: 't.k' });
    await p.src.unsafe(`DELETE FROM pt WHERE k = 1`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    await assertTablesEqual(p, 'pt', { orderBy: 't.k' });
    assert.deepEqual(await texts(p.dst, `SELECT k || ':' || v AS r FROM pt`), ['11:c']);
  }));

  it('stops with an error when a change would touch more target rows than the source changed', async () => {
    const p = await databasePair(scope, pair, 'too_many');
    // The target lacks the source's primary key and will hold a duplicate of a key.
    await p.src.unsafe(`CREATE TABLE dup (id int PRIMARY KEY, v text);`);
    await p.dst.unsafe(`CREATE TABLE dup (id int, v text);`);
    const { lines, logger } = capturingLogger();
    const e = startEngine(scope, parseConfig(configInput(p, { name: 'too_many' })), {}, logger);
    try {
      await withTimeout(e.streaming, 120_000, 'streaming');
      await p.src.unsafe(`INSERT INTO dup VALUES (1, 'a'), (2, 'a')`);
      await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
      await p.dst.unsafe(`INSERT INTO dup VALUES (1, 'extra')`);
      await p.src.unsafe(`UPDATE dup SET v = 'b' WHERE id = 1`);
      await assert.rejects(waitForCatchUp(p, { engine: e, timeoutMs: 8_000 }), 'apply did not move past the change');
      // Neither target row with id 1 was changed: the batch rolled back.
      assert.deepEqual(await texts(p.dst, `SELECT v AS r FROM dup WHERE id = 1 ORDER BY v`), ['a', 'extra']);
      const named = lines.some((l) => l.includes('duplicate rows for a replica identity key'))
        || String((e.error as Error | undefined)?.message).includes('duplicate rows for a replica identity key');
      assert.ok(named, 'the error names the cause');
    } finally {
      await e.stop().catch(() => {});
    }
  });

  it('lets ENABLE ALWAYS / ENABLE REPLICA triggers see every change, in source order across tables', async () => {
    const p = await databasePair(scope, pair, 'triggers');
    await ddlBoth(p, `
      CREATE TABLE tr (id int PRIMARY KEY, n int);
      CREATE TABLE tr2 (id int PRIMARY KEY, n int);
      CREATE TABLE other (id int PRIMARY KEY);`);
    await p.dst.unsafe(`
      CREATE TABLE tr_log (seq bigserial PRIMARY KEY, tab text, op text, id int, n int, others bigint);
      CREATE FUNCTION tr_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE r record;
      BEGIN
        IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
        INSERT INTO tr_log (tab, op, id, n, others) VALUES (TG_TABLE_NAME, TG_OP, r.id, r.n, (SELECT count(*) FROM other));
        RETURN NULL;
      END $$;
      CREATE TRIGGER tr_audit AFTER INSERT OR UPDATE OR DELETE ON tr FOR EACH ROW EXECUTE FUNCTION tr_audit();
      ALTER TABLE tr ENABLE ALWAYS TRIGGER tr_audit;
      CREATE TRIGGER tr2_audit AFTER INSERT OR UPDATE OR DELETE ON tr2 FOR EACH ROW EXECUTE FUNCTION tr_audit();
      ALTER TABLE tr2 ENABLE REPLICA TRIGGER tr2_audit;`);
    const { lines, logger } = capturingLogger();
    const e = startEngine(scope, parseConfig(configInput(p, { name: 'triggers', tables: ['tr', 'tr2', 'other'], apply: { batchMaxAgeMs: 300, batchMaxTransactions: 10000 } })), {}, logger);
    try {
      await withTimeout(e.streaming, 120_000, 'streaming');
      await p.src.begin(async (tx) => {
        await tx.unsafe(`INSERT INTO tr VALUES (1, 0)`);
        await tx.unsafe(`UPDATE tr SET n = 1 WHERE id = 1`);
        await tx.unsafe(`INSERT INTO other VALUES (1)`);
        await tx.unsafe(`UPDATE tr SET n = 2 WHERE id = 1`);
        await tx.unsafe(`DELETE FROM tr WHERE id = 1`);
      });
      await p.src.unsafe(`INSERT INTO tr2 VALUES (7, 0)`);
      await p.src.unsafe(`UPDATE tr2 SET n = 1 WHERE id = 7`);
      await p.src.unsafe(`INSERT INTO other VALUES (2)`);
      await p.src.unsafe(`UPDATE tr2 SET n = 2 WHERE id = 7`);
      await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
      assert.deepEqual(await texts(p.dst, `SELECT concat_ws(' ', tab, op, id, n, others) AS r FROM tr_log ORDER BY seq`), [
        'tr INSERT 1 0 0',
        'tr UPDATE 1 1 0',
        'tr UPDATE 1 2 1',
        'tr DELETE 1 2 1',
        'tr2 INSERT 7 0 1',
        'tr2 UPDATE 7 1 1',
        'tr2 UPDATE 7 2 2',
      ]);
      for (const t of ['tr', 'tr2', 'other']) await assertTablesEqual(p, t);
      // Said once per table, however many batches touched it.
      await p.src.unsafe(`INSERT INTO tr VALUES (2, 0)`);
      await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
      const notes = lines.filter((l) => l.includes('net-effect folding is off'));
      assert.equal(notes.length, 2, notes.join('\n'));
      assert.equal(notes.filter((l) => l.includes('tr2')).length, 1, notes.join('\n'));
    } finally {
      await e.stop().catch(() => {});
    }
  });
});
