/**
 * Long insert runs are applied with COPY FROM STDIN: values must arrive
 * byte-exact through COPY's text escaping, and a COPY that fails on the
 * target must surface the server's real error (postgres.js drops it; copyIn
 * recovers it), stop, and lose nothing once the cause is fixed.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';
import { TestScope, capturingLogger, startPair, ddlBoth, startEngine, configInput, withTimeout, waitFor, waitForCatchUp, assertTablesEqual, type Pair, type RunningEngine } from '../support/replication.js';

describe('COPY for long insert runs', () => {
  const scope = new TestScope();
  let pair: Pair;
  let running: RunningEngine;
  const { lines: logLines, logger } = capturingLogger();

  before(async () => {
    // Large enough that these transactions are not streamed: they reach the batching writer whole.
    pair = await startPair(scope, { name: 'copy', sourceSettings: { logical_decoding_work_mem: '64MB' } });
    await ddlBoth(pair, `
      CREATE TABLE "Copy Me" (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "Wert" text, j jsonb, b bytea, ts timestamptz, arr text[], n numeric);
      CREATE TABLE nokey_log (a int, note text);
      CREATE TABLE seen_first (id int PRIMARY KEY, v text);
      CREATE TABLE seen_second (id int PRIMARY KEY, v text);`);
    running = startEngine(scope, parseConfig(configInput(pair, { tables: ['"Copy Me"', 'nokey_log', 'seen_first', 'seen_second'], apply: { batchMaxAgeMs: 200, copyMinRows: 1000 } })), {}, logger);
    await withTimeout(running.streaming, 60_000, 'streaming');
  });
  after(() => scope.cleanup());

  it('copies values that need escaping exactly, into an identity key and a table without a key', async () => {
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`
        INSERT INTO "Copy Me" ("Wert", j, b, ts, arr, n)
        SELECT CASE g % 8 WHEN 0 THEN NULL WHEN 1 THEN E'tab\\there' WHEN 2 THEN E'new\\nline\\r\\n' WHEN 3 THEN E'back\\\\slash \\\\N'
                          WHEN 4 THEN '' WHEN 5 THEN 'ünïcødé ✓ 日本' WHEN 6 THEN '\\N' ELSE repeat('x', 50) END,
               jsonb_build_object('k', g, 's', E'q"\\t\\\\'), decode(md5(g::text), 'hex'),
               '2024-01-01 00:00:00.123456+00'::timestamptz + g * interval '1 second', ARRAY['a b', E'c"d', NULL, E'e\\nf'], g / 7.0
        FROM generate_series(1, 3000) g`);
      await tx.unsafe(`INSERT INTO nokey_log SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE E'line\\t' || g END FROM generate_series(1, 2500) g`);
    });
    await waitForCatchUp(pair, { engine: running });
    await assertTablesEqual(pair, '"Copy Me"', { orderBy: 'id' });
    await assertTablesEqual(pair, 'nokey_log', { orderBy: 'a' });
    const [row] = await pair.dst.unsafe<{ v: string | null }[]>(`SELECT "Wert" AS v FROM "Copy Me" WHERE id = 3`);
    assert.equal(row?.v, 'back\\slash \\N');
  });

  it('a table first seen while a COPY is still sending is looked up behind it', async () => {
    // 25,000 rows pass the writer's 20,000-change drain, so a COPY is under way when the first
    // change to seen_second needs a catalog lookup on the same connection.
    const linesBefore = logLines.length;
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO seen_first SELECT g, repeat('p', 200) FROM generate_series(1, 25000) g`);
      await tx.unsafe(`INSERT INTO seen_second VALUES (1, 'after the copy')`);
    });
    await waitForCatchUp(pair, { engine: running });
    await assertTablesEqual(pair, 'seen_first', { orderBy: 'id' });
    await assertTablesEqual(pair, 'seen_second', { orderBy: 'id' });
    // Converging is not enough: a lookup that cut into the COPY broke the connection (or was
    // refused by postgres.js) and only a retry got the data through.
    const interruptions = logLines.slice(linesBefore).filter((l) => l.includes('replication interrupted'));
    assert.deepEqual(interruptions, []);
  });

  it('those runs went through COPY (apply statistics at a clean stop)', async () => {
    await running.stop();
    const stopped = logLines.map((l) => JSON.parse(l) as { msg?: string; copies?: number }).find((l) => l.msg === 'streaming stopped');
    assert.ok(stopped, 'the engine logged its apply statistics');
    assert.ok((stopped.copies ?? 0) >= 2, `one COPY per table expected, the log says copies: ${stopped.copies}`);
    running = startEngine(scope, running.config, {}, logger);
    await withTimeout(running.streaming, 60_000, 'streaming again');
  });

  it('a COPY that fails on the target stops with the server\'s error, and nothing is lost once it is fixed', async () => {
    // A constraint only the target has: the COPY of the run holding the 'bad' row fails.
    await pair.dst.unsafe(`ALTER TABLE nokey_log ADD CONSTRAINT no_bad CHECK (note IS DISTINCT FROM 'bad')`);
    const linesBefore = logLines.length;
    await pair.src.unsafe(`INSERT INTO nokey_log SELECT g, CASE WHEN g = 11500 THEN 'bad' ELSE 'ok' END FROM generate_series(10001, 12000) g`);
    // A constraint only the target has stops apply (docs/conflicts.md): it would fail the same way every time.
    await withTimeout(running.done, 60_000, 'the engine did not stop');
    assert.ok(running.error instanceof PgtideError, `stopped with ${String(running.error)}`);
    assert.equal(running.error.retryable, false);
    // The server's own error, not the "transaction is aborted" of the statements behind the COPY.
    assert.match(running.error.message, /violates check constraint "no_bad"/);
    assert.ok(!logLines.slice(linesBefore).some((l) => l.includes('25P02')), 'no 25P02 in the log');
    await pair.dst.unsafe(`ALTER TABLE nokey_log DROP CONSTRAINT no_bad`);
    running = startEngine(scope, running.config, {}, logger);
    await withTimeout(running.streaming, 60_000, 'streaming again');
    await waitForCatchUp(pair, { engine: running, timeoutMs: 90_000 });
    await assertTablesEqual(pair, 'nokey_log', { orderBy: 'a, note' });
  });

});

describe('COPY inside a streamed transaction', () => {
  const scope = new TestScope();
  let pair: Pair;
  let running: RunningEngine;
  const { lines: logLines, logger } = capturingLogger();

  before(async () => {
    // 1 MB of decoding memory: the source streams large transactions in chunks of a few thousand rows.
    pair = await startPair(scope, { name: 'copystream', sourceSettings: { logical_decoding_work_mem: '1MB' } });
    await ddlBoth(pair, `
      CREATE TABLE "Copy Me" (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "Wert" text);
      CREATE TABLE nokey_log (a int, note text);`);
    running = startEngine(scope, parseConfig(configInput(pair, { tables: ['"Copy Me"', 'nokey_log'], apply: { copyMinRows: 1000 } })), {}, logger);
    await withTimeout(running.streaming, 60_000, 'streaming');
  });
  after(() => scope.cleanup());

  it('a streamed transaction applies its long insert runs with COPY too', async () => {
    try {
      await pair.src.begin(async (tx) => {
        await tx.unsafe(`INSERT INTO nokey_log SELECT g, repeat('s', 40) || g FROM generate_series(100001, 160000) g`);
        await tx.unsafe(`INSERT INTO "Copy Me" ("Wert") SELECT E'streamed\\\\' || g FROM generate_series(1, 20000) g`);
      });
      await waitForCatchUp(pair, { engine: running, timeoutMs: 90_000 });
    } catch (error) {
      throw new Error(`${(error as Error).message}\ntarget log:\n${pair.target.recentLog()}`);
    }
    // Slot statistics reach the view with a delay.
    await waitFor('the source to report a streamed transaction', async () => {
      const [slot] = await pair.src.unsafe<{ n: string }[]>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = 'pgtide_slot'`);
      return Number(slot?.n) > 0 ? true : undefined;
    }, { timeoutMs: 15_000 });
    await assertTablesEqual(pair, 'nokey_log', { orderBy: 'a, note' });
    await assertTablesEqual(pair, '"Copy Me"', { orderBy: 'id' });
    await running.stop();
    const stopped = logLines.map((l) => JSON.parse(l) as { msg?: string; copies?: number }).find((l) => l.msg === 'streaming stopped');
    assert.ok((stopped?.copies ?? 0) >= 1, `the streamed writer used COPY; the log says copies: ${stopped?.copies}`);
  });

});
