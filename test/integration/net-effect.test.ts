/**
 * Net-effect batching: folding changes per key inside a batch, and the
 * exact-order replay when a secondary unique constraint makes folding unsafe.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { TestScope, capturingLogger, startPair, ddlBoth, startEngine, configInput, withTimeout, waitForCatchUp, assertTablesEqual, type Pair, type RunningEngine } from '../support/replication.js';

describe('net-effect batching', () => {
  const scope = new TestScope();
  let pair: Pair;
  let running: RunningEngine;
  const { lines: logLines, logger } = capturingLogger();

  before(async () => {
    pair = await startPair(scope, { name: 'fold' });
    await ddlBoth(pair, `
      CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL UNIQUE, n int NOT NULL DEFAULT 0);
      CREATE TABLE hot (id int PRIMARY KEY, n bigint NOT NULL);`);
    // On the source only: the initial copy brings them (it keeps target rows, so rows on both sides would collide).
    await pair.src.unsafe(`INSERT INTO hot SELECT g, 0 FROM generate_series(1, 5) g`);
    // Large batches, so that many source transactions fold together.
    running = startEngine(scope, parseConfig(configInput(pair, { tables: ['users', 'hot'], apply: { batchMaxAgeMs: 500, batchMaxTransactions: 10000 } })), {}, logger);
    await withTimeout(running.streaming, 60_000, 'streaming');
  });
  after(() => scope.cleanup());

  it('folds hot-row updates across many transactions into the final values', async () => {
    for (let i = 0; i < 300; i++) {
      await pair.src.begin(async (tx) => {
        await tx.unsafe(`UPDATE hot SET n = n + 1 WHERE id = $1`, [1 + (i % 5)]);
        await tx.unsafe(`UPDATE hot SET n = n + 10 WHERE id = 1`);
      });
    }
    await waitForCatchUp(pair, { engine: running });
    await assertTablesEqual(pair, 'hot', { orderBy: 'id' });
  });

  it('a batch whose reordering breaks a unique constraint is replayed in exact order', async () => {
    // In one batch: alice gives up her email, bob takes it. Folded per table, inserts run before
    // updates, so bob's insert would meet alice's old email: the batch must be replayed in order.
    await pair.src.unsafe(`INSERT INTO users VALUES (1, 'shared@example.com')`);
    await waitForCatchUp(pair, { engine: running });
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`UPDATE users SET email = 'alice@example.com' WHERE id = 1`);
    });
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO users VALUES (2, 'shared@example.com')`);
    });
    for (let i = 3; i < 50; i++) await pair.src.unsafe(`INSERT INTO users VALUES ($1, $2)`, [i, `u${i}@example.com`]);
    await waitForCatchUp(pair, { engine: running, timeoutMs: 60_000 });
    await assertTablesEqual(pair, 'users', { orderBy: 'id' });
    assert.equal(running.finished, false, 'the engine kept running');
    assert.ok(logLines.some((l) => l.includes('replaying it in exact order')), 'the fold conflict was detected and replayed');
  });
});
