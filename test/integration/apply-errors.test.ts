/**
 * Apply errors are reported as the server gave them, never as the
 * "current transaction is aborted" (25P02) they cause on the statements
 * pipelined behind them, and they are classified once: a transient or
 * user-fixable conflict is retried, a deterministic one stops pgtide with the
 * table, the source transaction and the server's message and DETAIL (a
 * conflict on the target stops too: docs/conflicts.md). The last error is
 * kept on the target for `pgtide status`.
 *
 * Each case runs in its own database of one cluster pair, so each has its own
 * slot, origin and state, and the tables a new attempt looks up are new to its
 * catalog (that first lookup is where a 25P02 used to surface).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';
import { collectStatus, formatStatus } from '../../src/control/status.js';
import type postgres from 'postgres';
import {
  TestScope, capturingLogger, startPair, databasePair, ddlBoth, startEngine, configInput, withTimeout, waitFor, waitForCatchUp,
  assertTablesEqual, type Pair, type RunningEngine,
} from '../support/replication.js';

/** The error the engine stopped with, which must be a PgtideError. */
async function stoppedWith(running: RunningEngine, timeoutMs = 60_000): Promise<PgtideError> {
  await withTimeout(running.done, timeoutMs, 'the engine did not stop');
  assert.ok(running.error instanceof PgtideError, `the engine stops with a PgtideError; got ${String(running.error)}`);
  return running.error;
}

function assertNot25P02(error: PgtideError): void {
  assert.notEqual(error.sqlState, '25P02', `the error must not be the 25P02 echo: ${error.message}`);
  assert.doesNotMatch(error.message, /current transaction is aborted/);
}

describe('apply errors: the real error, classified once', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;

  before(async () => {
    pair = await startPair(scope, { name: 'applyerr' });
  });
  after(() => scope.cleanup());

  it('case 4: a folded unique swap followed by a new table replays in exact order and converges (netEffect on)', async () => {
    const p = await databasePair(scope, pair, 'swap');
    await ddlBoth(p, `CREATE TABLE u (id int PRIMARY KEY, code text UNIQUE); CREATE TABLE v (id int PRIMARY KEY)`);
    await p.src.unsafe(`INSERT INTO u VALUES (1, 'A'), (2, 'B')`);
    // batchMaxAgeMs 0: every source transaction is its own batch, so the insert into v is sent
    // (with its catalog lookup) right behind the swap's COMMIT, whatever the timing.
    const config = parseConfig(configInput(p, { name: 'swap', tables: ['u', 'v'], apply: { batchMaxAgeMs: 0, netEffect: true } }));
    const first = startEngine(scope, config);
    await withTimeout(first.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: first });
    await first.stop();

    await p.src.begin(async (tx) => {
      await tx.unsafe(`UPDATE u SET code = code || '#' WHERE id IN (1, 2)`);
      await tx.unsafe(`UPDATE u SET code = CASE id WHEN 1 THEN 'B' ELSE 'A' END WHERE id IN (1, 2)`);
    });
    await p.src.unsafe(`INSERT INTO v VALUES (1)`);
    const { lines, logger } = capturingLogger();
    const second = startEngine(scope, config, {}, logger);
    await withTimeout(second.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: second, timeoutMs: 60_000 });
    await assertTablesEqual(p, 'u', { orderBy: 'id' });
    await assertTablesEqual(p, 'v', { orderBy: 'id' });
    assert.deepEqual([...await p.dst.unsafe(`SELECT id, code FROM u ORDER BY id`)], [{ id: 1, code: 'B' }, { id: 2, code: 'A' }]);
    assert.equal(second.finished, false, `the engine keeps running; it stopped with ${String(second.error)}`);
    assert.ok(lines.some((l) => l.includes('replaying it in exact order')), 'the fold conflict was detected and replayed');
    assert.ok(!lines.some((l) => l.includes('25P02')), `no 25P02 in the log:\n${lines.filter((l) => l.includes('25P02')).join('')}`);
    await second.stop();
  });

  it('case 5: TRUNCATE of a table the target references stops with 0A000, the table and the server DETAIL', async () => {
    const p = await databasePair(scope, pair, 'trunc');
    await ddlBoth(p, `CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent); CREATE TABLE w (id int PRIMARY KEY)`);
    await p.src.unsafe(`INSERT INTO parent VALUES (1)`);
    // child is not published: the source's CASCADE reaches it, the stream lists only parent.
    const config = parseConfig(configInput(p, { name: 'trunc', tables: ['parent', 'w'], apply: { batchMaxAgeMs: 0 } }));
    const first = startEngine(scope, config);
    await withTimeout(first.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: first });
    await first.stop();

    await p.src.unsafe(`TRUNCATE parent CASCADE; INSERT INTO w VALUES (1)`);
    const second = startEngine(scope, config);
    const error = await stoppedWith(second);
    assertNot25P02(error);
    assert.equal(error.code, 'APPLY_FAILED');
    assert.equal(error.sqlState, '0A000');
    assert.equal(error.retryable, false, 'a TRUNCATE the target refuses fails the same way every time');
    assert.match(error.message, /cannot truncate a table referenced in a foreign key constraint/);
    assert.match(error.message, /Table "child" references "parent"/, 'the server DETAIL is in the message');
    assert.match(error.message, /"public"\."parent"/, 'the message names the table');
    assert.match(error.message, /xid \d+/, 'the message names the source transaction');
    assert.match(error.message, /commit LSN [0-9A-F]+\/[0-9A-F]+/);

    const status = await collectStatus(config);
    assert.ok(status.lastError, 'status shows the last error');
    assert.equal(status.lastError.sqlState, '0A000');
    assert.equal(status.lastError.retrying, false);
    assert.match(status.lastError.detail ?? '', /Table "child" references "parent"/);
    assert.match(formatStatus(status), /last error\s+APPLY_FAILED \(SQLSTATE 0A000\).*not retried/);
  });

  it('case 5: a duplicate key on INSERT (batchMaxAgeMs 0) stops with the real message (not retried), shown by status, and clears once fixed', async () => {
    const p = await databasePair(scope, pair, 'dup');
    await ddlBoth(p, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY)`);
    const config = parseConfig(configInput(p, { name: 'dup', tables: ['a', 'b'], apply: { batchMaxAgeMs: 0 } }));
    const first = startEngine(scope, config);
    await withTimeout(first.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: first });
    await first.stop();

    await p.dst.unsafe(`INSERT INTO a VALUES (5, 'already on the target')`);
    await p.src.unsafe(`INSERT INTO a VALUES (5, 'from the source'); INSERT INTO b VALUES (1)`);
    const { lines, logger } = capturingLogger();
    const second = startEngine(scope, config, {}, logger);
    // A conflict under the default policy (error) stops apply instead of retrying for ever (docs/conflicts.md).
    const error = await stoppedWith(second);
    assertNot25P02(error);
    assert.equal(error.code, 'APPLY_CONFLICT');
    assert.equal(error.sqlState, '23505');
    assert.equal(error.retryable, false);
    assert.match(error.message, /Key \(id\)=\(5\) already exists/, 'the server DETAIL is in the message');
    assert.match(error.message, /"public"\."a"/, 'the table is named');
    assert.match(error.message, /source transaction xid \d+, commit LSN [0-9A-F]+\/[0-9A-F]+/, 'the source transaction is named');
    assert.ok(!lines.some((l) => l.includes('25P02')), `no 25P02 in the log:\n${lines.filter((l) => l.includes('25P02')).join('')}`);

    const status = await collectStatus(config);
    assert.equal(status.lastError?.retrying, false);
    assert.match(status.lastError?.message ?? '', /duplicate key value violates unique constraint/);
    assert.match(status.lastError?.detail ?? '', /Key \(id\)=\(5\) already exists/);
    assert.match(formatStatus(status), /last error\s+APPLY_CONFLICT \(SQLSTATE 23505\).*not retried/);

    // The user removes the conflicting row and starts pgtide again; the error is cleared.
    await p.dst.unsafe(`DELETE FROM a WHERE id = 5`);
    const third = startEngine(scope, config);
    await withTimeout(third.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: third, timeoutMs: 90_000 });
    await assertTablesEqual(p, 'a', { orderBy: 'id' });
    await assertTablesEqual(p, 'b', { orderBy: 'id' });
    const after = await collectStatus(config);
    assert.equal(after.lastError, undefined, 'apply made progress: the last error is cleared');
    await third.stop();
  });

  it('case 5: an UPDATE without SELECT privilege on the target stops with PERMISSION_DENIED naming the table', async (t) => {
    if (pair.major < 15) {
      // A non-superuser can be given session_replication_role only with GRANT SET ON PARAMETER (15+).
      t.skip('PostgreSQL 14 lets only a superuser apply with session_replication_role = replica');
      return;
    }
    const p = await databasePair(scope, pair, 'nosel');
    await ddlBoth(p, `CREATE TABLE s (id int PRIMARY KEY, v text); CREATE TABLE s2 (id int PRIMARY KEY)`);
    await p.src.unsafe(`INSERT INTO s VALUES (1, 'x')`);
    const config = parseConfig(configInput(p, { name: 'nosel', tables: ['s', 's2'], apply: { batchMaxAgeMs: 0 } }));
    const first = startEngine(scope, config);
    await withTimeout(first.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: first });
    await first.stop();

    const role = 'apply_nosel';
    await p.dst.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'nosel-pw';
      GRANT SET ON PARAMETER session_replication_role TO ${role};
      GRANT CREATE ON DATABASE nosel TO ${role};
      GRANT ALL ON SCHEMA pgtide TO ${role};
      GRANT ALL ON ALL TABLES IN SCHEMA pgtide TO ${role};
      GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_session_setup(text), pg_replication_origin_session_reset(),
        pg_replication_origin_xact_setup(pg_lsn, timestamptz), pg_replication_origin_progress(text, boolean), pg_replication_origin_advance(text, pg_lsn) TO ${role};
      GRANT INSERT, UPDATE, DELETE, TRUNCATE ON s, s2, pgtide_test_marker TO ${role};
      GRANT SELECT ON pgtide_test_marker, s, s2 TO ${role};`);
    const limited = new URL(p.targetUrl);
    limited.username = role;
    limited.password = 'nosel-pw';
    const limitedConfig = parseConfig(configInput({ sourceUrl: p.sourceUrl, targetUrl: limited.toString() }, { name: 'nosel', tables: ['s', 's2'], apply: { batchMaxAgeMs: 0 } }));
    const second = startEngine(scope, limitedConfig);
    // The start-up privilege check (privileges.ts) would refuse a role without SELECT before
    // any apply; the grant is taken away while pgtide streams, so the apply path meets it.
    await withTimeout(second.streaming, 60_000, 'streaming');
    await p.dst.unsafe(`REVOKE SELECT ON s FROM ${role}`);
    await p.src.unsafe(`UPDATE s SET v = 'y' WHERE id = 1; INSERT INTO s2 VALUES (1)`);
    const error = await stoppedWith(second);
    assertNot25P02(error);
    assert.equal(error.code, 'PERMISSION_DENIED');
    assert.equal(error.sqlState, '42501');
    assert.equal(error.retryable, false);
    assert.match(error.message, /permission denied for table s\b/);
    assert.match(error.message, /GRANT SELECT/);
    assert.ok(!error.message.includes('nosel-pw'));
  });

  it('case 5: a source role without SELECT on a published table fails the copy with PERMISSION_DENIED and the GRANT to run', async () => {
    const p = await databasePair(scope, pair, 'srcsel');
    await ddlBoth(p, `CREATE TABLE open_t (id int PRIMARY KEY); CREATE TABLE secret_t (id int PRIMARY KEY)`);
    await p.src.unsafe(`INSERT INTO open_t SELECT generate_series(1, 10); INSERT INTO secret_t SELECT generate_series(1, 10);
      CREATE PUBLICATION srcsel_pub FOR TABLE open_t, secret_t, pgtide_test_marker;
      CREATE ROLE copy_nosel LOGIN REPLICATION PASSWORD 'srcsel-pw';
      GRANT SELECT ON open_t, pgtide_test_marker TO copy_nosel;`);
    const limited = new URL(p.sourceUrl);
    limited.username = 'copy_nosel';
    limited.password = 'srcsel-pw';
    const config = parseConfig(configInput({ sourceUrl: limited.toString(), targetUrl: p.targetUrl }, { name: 'srcsel', publication: 'srcsel_pub' }));
    const running = startEngine(scope, config);
    const error = await stoppedWith(running);
    // Reported by the start-up privilege check (privileges.ts), before the copy reads anything;
    // the copy's own mapping of 42501 (table-copy.ts) remains for a grant revoked meanwhile.
    assert.equal(error.code, 'PERMISSION_DENIED', `got [${error.code}] ${error.message}`);
    assert.match(error.message, /"public"\."secret_t"/);
    assert.match(error.message, /GRANT SELECT ON (TABLE )?"public"\."secret_t" TO "?copy_nosel"?/);
    assert.ok(!error.message.includes('srcsel-pw'));
  });

  it('connection attempts: a target out of connection slots (53300) at start is waited for with backoff, then replication starts', async () => {
    // No slots kept for superusers, so the test's sessions can take every one.
    const full = await startPair(scope, {
      name: 'slots',
      targetSettings: { max_connections: 8, superuser_reserved_connections: 0, ...(pair.major >= 16 ? { reserved_connections: 0 } : {}) },
    });
    await ddlBoth(full, `CREATE TABLE r (id int PRIMARY KEY)`);
    await full.src.unsafe(`INSERT INTO r SELECT generate_series(1, 5)`);
    const hogs: postgres.Sql[] = [];
    scope.defer('end the connection hogs', () => Promise.allSettled(hogs.map((h) => h.end({ timeout: 1 }))));
    for (;;) {
      const hog = full.target.sql('postgres', { max: 1, connect_timeout: 5 });
      hogs.push(hog);
      try {
        await hog.unsafe('SELECT 1');
      } catch (error) {
        assert.equal((error as { code?: string }).code, '53300', `filling the target's slots: ${String(error)}`);
        break;
      }
      assert.ok(hogs.length < 20, 'the target has a connection limit');
    }
    const { lines, logger } = capturingLogger();
    const running = startEngine(scope, parseConfig(configInput(full, { name: 'slots', tables: ['r'] })), {}, logger);
    await waitFor('a retried 53300', () => (lines.some((l) => l.includes('53300') && l.includes('retrying')) ? true : undefined), { timeoutMs: 60_000, failFast: () => (running.finished ? running.error ?? new Error('stopped') : undefined) });
    await Promise.all(hogs.splice(0).map((h) => h.end({ timeout: 1 })));
    await withTimeout(running.streaming, 90_000, 'streaming after the slots were freed');
    await waitForCatchUp(full, { engine: running });
    await assertTablesEqual(full, 'r', { orderBy: 'id' });
    await running.stop();
  });
});
