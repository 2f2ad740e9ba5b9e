/**
 * Large transactions applied while they stream (apply.streamedApply, the
 * default): a separate target connection holds the transaction open, with
 * savepoints for subtransactions, and commits it in source commit order.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestScope, startPair, ddlBoth, startStreaming, waitFor, waitForCatchUp, assertTablesEqual, texts, type Pair, type RunningEngine } from '../support/replication.js';

describe('streamed transactions applied while streaming', () => {
  const scope = new TestScope();
  let pair: Pair;
  let running: RunningEngine;
  const equal = async (...tables: string[]) => { for (const t of tables) await assertTablesEqual(pair, t); };

  before(async () => {
    // A tiny logical_decoding_work_mem makes the source stream every transaction of any size.
    pair = await startPair(scope, { name: 'stream', sourceSettings: { logical_decoding_work_mem: '64kB' } });
    await ddlBoth(pair, `
      CREATE TABLE big (id int PRIMARY KEY, payload text, n int NOT NULL DEFAULT 0);
      CREATE TABLE small (id int PRIMARY KEY, v text);
      CREATE TABLE full_t (k int, v text);
      ALTER TABLE full_t REPLICA IDENTITY FULL;`);
    running = await startStreaming(scope, pair, { tables: ['big', 'small', 'full_t'], memoryCap: '256kB', apply: { streamedApply: true } });
  });
  after(() => scope.cleanup());

  it('applies a large transaction with concurrent small commits in commit order', async () => {
    const s = pair.src;
    await s.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 20000) g`);
      for (let i = 0; i < 5; i++) await s.unsafe(`INSERT INTO small VALUES ($1, 'during')`, [i]);
      await tx.unsafe(`UPDATE big SET n = n + 1 WHERE id % 3 = 0`);
      await tx.unsafe(`DELETE FROM big WHERE id % 7 = 0`);
      await tx.unsafe(`UPDATE big SET id = id + 100000 WHERE id % 11 = 0`);
      await tx.unsafe(`INSERT INTO full_t SELECT g % 10, 'dup' FROM generate_series(1, 3000) g`);
      await tx.unsafe(`DELETE FROM full_t WHERE ctid IN (SELECT min(ctid) FROM full_t GROUP BY k)`);
    });
    await waitForCatchUp(pair, { engine: running });
    await equal('big', 'small', 'full_t');
    const [slot] = await s.unsafe<{ n: string }[]>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = 'pgtide_slot'`);
    assert.ok(Number(slot?.n) > 0, 'the source streamed the transaction');
  });

  it('rolls back an aborted streamed transaction and leaves no trace', async () => {
    const before = await texts(pair.dst, `SELECT count(*)::text AS r FROM big`);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big SELECT g, 'aborted' FROM generate_series(300001, 320000) g`);
      await tx.unsafe(`DELETE FROM big WHERE id < 5000`);
      throw new Error('roll back');
    }).catch((e: Error) => { if (e.message !== 'roll back') throw e; });
    await pair.src.unsafe(`INSERT INTO small VALUES (100, 'after abort')`);
    await waitForCatchUp(pair, { engine: running });
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM big`), before);
    await equal('big', 'small');
  });

  it('undoes rolled-back savepoints, nested ones included, and keeps released ones', async () => {
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big SELECT g, 'kept-1' FROM generate_series(400001, 405000) g`);
      await tx.unsafe(`SAVEPOINT a`);
      await tx.unsafe(`INSERT INTO big SELECT g, 'released' FROM generate_series(405001, 410000) g`);
      await tx.unsafe(`RELEASE SAVEPOINT a`);
      await tx.unsafe(`SAVEPOINT b`);
      await tx.unsafe(`INSERT INTO big SELECT g, 'rolled back b' FROM generate_series(410001, 415000) g`);
      await tx.unsafe(`SAVEPOINT c`);
      await tx.unsafe(`UPDATE big SET payload = 'rolled back c' WHERE id BETWEEN 400001 AND 402000`);
      await tx.unsafe(`ROLLBACK TO SAVEPOINT b`);
      await tx.unsafe(`SAVEPOINT d`);
      await tx.unsafe(`DELETE FROM big WHERE id BETWEEN 400001 AND 400100`);
      await tx.unsafe(`ROLLBACK TO SAVEPOINT d`);
      await tx.unsafe(`INSERT INTO big SELECT g, 'kept-2' FROM generate_series(415001, 420000) g`);
    });
    await waitForCatchUp(pair, { engine: running });
    await equal('big');
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM big WHERE payload LIKE 'rolled back%'`), ['0']);
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM big WHERE id BETWEEN 400001 AND 420000`), ['15000']);
  });

  // A transaction that commits on the source while the streamed one is open may change a row
  // the streamed one changes afterwards. Its batch must be committed on the target before the
  // streamed connection reaches that row, or the streamed connection waits on it for ever.
  it('applies a streamed transaction that changes a row after a concurrent commit changed it', async () => {
    const s = pair.src;
    await s.unsafe(`INSERT INTO small VALUES (200, 'before')`);
    await waitForCatchUp(pair, { engine: running });
    await s.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(600001, 620000) g`);
      await s.unsafe(`UPDATE small SET v = 'by the concurrent commit' WHERE id = 200`);
      await tx.unsafe(`UPDATE small SET v = v || ', then by the streamed transaction' WHERE id = 200`);
      await tx.unsafe(`INSERT INTO big SELECT g, 'after' FROM generate_series(620001, 670000) g`);
    });
    await waitForCatchUp(pair, { engine: running, timeoutMs: 60_000 });
    await equal('big', 'small');
    assert.deepEqual(await texts(pair.dst, `SELECT v AS r FROM small WHERE id = 200`), ['by the concurrent commit, then by the streamed transaction']);
  });

  // The streamed transaction's own session dies after its last chunk and before the source
  // commits. Its commit must fail and be retried, not be counted as done: postgres.js runs a
  // later query on a fresh session, where binding the origin and "committing" both succeed.
  it('does not count a streamed transaction as applied when its session died before the commit', async () => {
    const s = pair.src;
    await s.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big SELECT g, 'session killed' FROM generate_series(700001, 720000) g`);
      // Wait until the streamed connection holds all of it, idle in its transaction, then kill it.
      const pid = await waitFor('the streamed apply session to hold the transaction', async () => {
        const [row] = await pair.dst.unsafe<{ pid: number; n: string }[]>(
          `SELECT pid, (SELECT count(*) FROM big WHERE id > 700000)::text AS n FROM pg_stat_activity
            WHERE application_name = 'pgtide-apply' AND state = 'idle in transaction' AND backend_xid IS NOT NULL`);
        return row ? row.pid : undefined;
      });
      await sleep(300);
      await pair.dst.unsafe(`SELECT pg_terminate_backend($1)`, [pid]);
      await sleep(300);
    });
    await waitForCatchUp(pair, { engine: running, timeoutMs: 60_000 });
    await equal('big');
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM big WHERE id BETWEEN 700001 AND 720000`), ['20000']);
  });

  it('survives a restart of pgtide in the middle of a streamed transaction', async () => {
    const s = pair.src;
    await s.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO big SELECT g, 'across restart' FROM generate_series(500001, 520000) g`);
      await running.stop();
      running = await startStreaming(scope, pair, { tables: ['big', 'small', 'full_t'], memoryCap: '256kB', apply: { streamedApply: true } });
      await tx.unsafe(`INSERT INTO big SELECT g, 'across restart 2' FROM generate_series(520001, 530000) g`);
    });
    await waitForCatchUp(pair, { engine: running });
    await equal('big', 'small', 'full_t');
  });
});
