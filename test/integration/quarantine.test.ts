/**
 * Quarantine (docs/quarantine.md): a deterministic apply error stops pgtide;
 * `pgtide skip` makes the next start apply the stopped batch one source
 * transaction at a time and quarantine exactly the failing one, whole, in the
 * target transaction that moves the applied position past it;
 * `apply.onDeterministicError: quarantine` does it without stopping;
 * `pgtide quarantine list | replay | drop` act on what is held. A kill -9
 * during the skip start leaves every transaction applied or quarantined once.
 *
 * One cluster pair, one database per case. The failing change is a row that
 * a CHECK only the target has refuses (class 23: it fails the same way every
 * time).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';
import { collectStatus, formatStatus } from '../../src/control/status.js';
import {
  TestScope, startPair, databasePair, ddlBoth, startEngine, configInput, withTimeout, waitFor, waitForCatchUp, capturingLogger,
  assertTablesEqual, writeConfigFile, cliConfig, startCli, runCli, texts, type Pair, type RunningEngine,
} from '../support/replication.js';

async function stoppedWith(running: RunningEngine, timeoutMs = 60_000): Promise<PgtideError> {
  await withTimeout(running.done, timeoutMs, 'the engine did not stop');
  assert.ok(running.error instanceof PgtideError, `the engine stops with a PgtideError; got ${String(running.error)}`);
  return running.error;
}

/** Source transaction inserting (id, v); returns its xid. */
async function insertTx(p: Pair, table: string, rows: readonly (readonly [number, number])[]): Promise<string> {
  return p.src.begin(async (tx) => {
    for (const [id, v] of rows) await tx.unsafe(`INSERT INTO ${table} VALUES ($1, $2)`, [id, v]);
    const [row] = await tx.unsafe<{ xid: string }[]>(`SELECT txid_current()::text AS xid`);
    return row!.xid;
  }) as Promise<string>;
}

const CHECK_DDL = `CREATE TABLE acct (id int PRIMARY KEY, v int)`;
const TARGET_CHECK = `ALTER TABLE acct ADD CONSTRAINT acct_v_nonneg CHECK (v >= 0)`;

describe('quarantine: pgtide skip, onDeterministicError, list/replay/drop', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;

  before(async () => {
    pair = await startPair(scope, { name: 'quarantine' });
  });
  after(() => scope.cleanup());

  it('a deterministic error stops; pgtide skip quarantines exactly the failing transaction of the batch; replay and drop', async () => {
    const p = await databasePair(scope, pair, 'skip');
    await ddlBoth(p, CHECK_DDL);
    await p.dst.unsafe(TARGET_CHECK);
    // A long batch age: the three transactions below reach the writer in one target transaction.
    const input = configInput(p, { name: 'q_skip', tables: ['acct'], apply: { batchMaxAgeMs: 1000 } });
    const config = parseConfig(input);
    const first = startEngine(scope, config);
    await withTimeout(first.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: first });
    await first.stop();

    await insertTx(p, 'acct', [[1, 10]]);
    const badXid = await insertTx(p, 'acct', [[2, -5], [4, 40]]);
    await p.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO acct VALUES (3, 30)`);
      await tx.unsafe(`UPDATE acct SET v = 11 WHERE id = 1`);
    });

    const stopped = startEngine(scope, config);
    const error = await stoppedWith(stopped);
    assert.equal(error.code, 'APPLY_CONFLICT', error.message);
    assert.equal(error.sqlState, '23514');
    // The batch held all three transactions: none of them is on the target, and the stop names a span.
    assert.deepEqual([...await p.dst.unsafe(`SELECT id FROM acct`)], []);
    assert.match(error.message, /source transactions xid \d+, commit LSN [0-9A-F]+\/[0-9A-F]+ to xid \d+/);
    const [stop] = await p.dst.unsafe(`SELECT skip, until_lsn > from_lsn AS spans FROM pgtide.apply_stop WHERE subscription = 'q_skip'`);
    assert.deepEqual({ ...stop }, { skip: false, spans: true });

    assert.match(formatStatus(await collectStatus(config)), /not retried: pgtide stopped[\s\S]*run pgtide skip to quarantine the failing transaction/);
    const file = writeConfigFile(scope, cliConfig(p, input as unknown as Record<string, unknown>));
    const skip = await runCli(scope, ['skip', '--config', file]);
    assert.equal(skip.code, 0, skip.stderr);
    assert.match(skip.stdout, /quarantines the one that fails/);

    const { lines, logger } = capturingLogger();
    const resumed = startEngine(scope, config, {}, logger);
    await withTimeout(resumed.streaming, 60_000, 'streaming after skip');
    await waitForCatchUp(p, { engine: resumed });
    assert.deepEqual([...await p.dst.unsafe(`SELECT id, v FROM acct ORDER BY id`)], [{ id: 1, v: 11 }, { id: 3, v: 30 }]);
    const held = await p.dst.unsafe<{ id: string; source_xid: string; error_code: string; sql_state: string; tables: string[]; changes: unknown; position_past: boolean }[]>(
      `SELECT q.id::text, q.source_xid::text, q.error_code, q.sql_state, q.tables, q.changes,
              (SELECT end_lsn FROM pgtide.apply_progress WHERE subscription = 'q_skip') >= q.end_lsn AS position_past
         FROM pgtide.quarantine q WHERE subscription = 'q_skip'`);
    assert.equal(held.length, 1, 'exactly one transaction is quarantined');
    const q = held[0]!;
    assert.equal(q.source_xid, badXid);
    assert.equal(q.error_code, 'APPLY_CONFLICT');
    assert.equal(q.sql_state, '23514');
    assert.deepEqual(q.tables, ['"public"."acct"']);
    assert.deepEqual(q.changes, [
      { kind: 'insert', table: '"public"."acct"', new: { id: '2', v: '-5' } },
      { kind: 'insert', table: '"public"."acct"', new: { id: '4', v: '40' } },
    ], 'the whole transaction, the good row with the bad one');
    assert.equal(q.position_past, true);
    assert.ok(lines.some((l) => l.includes(`quarantined source transaction xid ${badXid}`)), 'a warning names the quarantined transaction');
    assert.deepEqual([...await p.dst.unsafe(`SELECT skip FROM pgtide.apply_stop WHERE subscription = 'q_skip'`)].map((r) => r.skip), [false], 'the skip is used up');
    // Later changes apply as usual.
    await p.src.unsafe(`INSERT INTO acct VALUES (5, 50)`);
    await waitForCatchUp(p, { engine: resumed });
    assert.equal((await p.dst.unsafe(`SELECT count(*)::int AS n FROM acct WHERE id = 5`))[0]!.n, 1);

    assert.match(formatStatus(await collectStatus(config)), /quarantined   1 source transaction\(s\) held instead of applied: pgtide quarantine list/);
    const list = await runCli(scope, ['quarantine', 'list', '--config', file]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`#${q.id}  xid ${badXid}  commit LSN [0-9A-F]+/[0-9A-F]+  2 change\\(s\\) on "public"."acct"`));
    assert.match(list.stdout, /APPLY_CONFLICT \(SQLSTATE 23514\)/);

    // The cause is still there: the replay fails, changes nothing, keeps the transaction.
    const failed = await runCli(scope, ['quarantine', 'replay', '--config', file, '--id', q.id]);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /QUARANTINE_REPLAY_FAILED.*acct_v_nonneg/);
    assert.equal((await p.dst.unsafe(`SELECT count(*)::int AS n FROM pgtide.quarantine WHERE id = $1`, [q.id]))[0]!.n, 1);
    assert.equal((await p.dst.unsafe(`SELECT count(*)::int AS n FROM acct WHERE id IN (2, 4)`))[0]!.n, 0);

    await p.dst.unsafe(`ALTER TABLE acct DROP CONSTRAINT acct_v_nonneg`);
    const replayed = await runCli(scope, ['quarantine', 'replay', '--config', file, '--id', q.id]);
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.match(replayed.stdout, /2 change\(s\) applied; removed from quarantine/);
    assert.equal((await p.dst.unsafe(`SELECT count(*)::int AS n FROM pgtide.quarantine WHERE subscription = 'q_skip'`))[0]!.n, 0);
    await waitForCatchUp(p, { engine: resumed });
    await assertTablesEqual(p, 'acct', { orderBy: 'id' });

    const unknown = await runCli(scope, ['quarantine', 'replay', '--config', file, '--id', q.id]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /QUARANTINE_NOT_FOUND.*no quarantined transaction with id/);
    const nothing = await runCli(scope, ['skip', '--config', file]);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /NOTHING_TO_SKIP/);
    await resumed.stop();
  });

  it('pgtide skip quarantines one transaction: a second failing one of the span stops, named exactly, and a second skip takes it', async () => {
    const p = await databasePair(scope, pair, 'twice');
    await ddlBoth(p, CHECK_DDL);
    await p.dst.unsafe(TARGET_CHECK);
    const input = configInput(p, { name: 'q_twice', tables: ['acct'], apply: { batchMaxAgeMs: 1000 } });
    const config = parseConfig(input);
    const first = startEngine(scope, config);
    await withTimeout(first.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: first });
    await first.stop();
    await insertTx(p, 'acct', [[1, 1]]);
    const bad1 = await insertTx(p, 'acct', [[2, -2]]);
    await insertTx(p, 'acct', [[3, 3]]);
    const bad2 = await insertTx(p, 'acct', [[4, -4]]);
    await insertTx(p, 'acct', [[5, 5]]);
    await stoppedWith(startEngine(scope, config));

    const file = writeConfigFile(scope, cliConfig(p, input as unknown as Record<string, unknown>));
    assert.equal((await runCli(scope, ['skip', '--config', file])).code, 0);
    const second = await stoppedWith(startEngine(scope, config));
    assert.match(second.message, new RegExp(`source transaction xid ${bad2}, commit LSN [0-9A-F]+/[0-9A-F]+:`), second.message);
    assert.deepEqual([...await p.dst.unsafe(`SELECT id FROM acct ORDER BY id`)].map((r) => r.id), [1, 3]);
    assert.deepEqual(await texts(p.dst, `SELECT source_xid::text AS r FROM pgtide.quarantine WHERE subscription = 'q_twice'`), [bad1]);

    assert.equal((await runCli(scope, ['skip', '--config', file])).code, 0);
    const third = startEngine(scope, config);
    await withTimeout(third.streaming, 60_000, 'streaming after the second skip');
    await waitForCatchUp(p, { engine: third });
    assert.deepEqual([...await p.dst.unsafe(`SELECT id FROM acct ORDER BY id`)].map((r) => r.id), [1, 3, 5]);
    assert.deepEqual(await texts(p.dst, `SELECT source_xid::text AS r FROM pgtide.quarantine WHERE subscription = 'q_twice' ORDER BY id`), [bad1, bad2]);
    await third.stop();
  });

  it('apply.onDeterministicError: quarantine quarantines each failing transaction and goes on; drop; replay of an UPDATE and a DELETE', async () => {
    const p = await databasePair(scope, pair, 'auto');
    await ddlBoth(p, CHECK_DDL);
    await p.dst.unsafe(TARGET_CHECK);
    const input = configInput(p, { name: 'q_auto', tables: ['acct'], apply: { batchMaxAgeMs: 500, onDeterministicError: 'quarantine' } });
    const { lines, logger } = capturingLogger();
    const running = startEngine(scope, parseConfig(input), {}, logger);
    await withTimeout(running.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: running });

    await insertTx(p, 'acct', [[1, 1]]);
    const bad1 = await insertTx(p, 'acct', [[2, -2]]);
    await insertTx(p, 'acct', [[3, 3]]);
    const bad2 = await p.src.begin(async (tx) => {
      await tx.unsafe(`DELETE FROM acct WHERE id = 3`);
      await tx.unsafe(`UPDATE acct SET v = -1 WHERE id = 1`);
      const [row] = await tx.unsafe<{ xid: string }[]>(`SELECT txid_current()::text AS xid`);
      return row!.xid;
    }) as string;
    await insertTx(p, 'acct', [[5, 5]]);
    await waitForCatchUp(p, { engine: running, timeoutMs: 90_000 });

    assert.equal(running.finished, false, `the engine keeps running; it stopped with ${String(running.error)}`);
    assert.deepEqual([...await p.dst.unsafe(`SELECT id, v FROM acct ORDER BY id`)], [{ id: 1, v: 1 }, { id: 3, v: 3 }, { id: 5, v: 5 }]);
    const held = await p.dst.unsafe<{ id: string; source_xid: string; changes: unknown }[]>(`SELECT id::text, source_xid::text, changes FROM pgtide.quarantine WHERE subscription = 'q_auto' ORDER BY commit_lsn`);
    assert.deepEqual(held.map((r) => r.source_xid), [bad1, bad2]);
    assert.deepEqual(held[1]!.changes, [
      { kind: 'delete', table: '"public"."acct"', identity: 'key', key: { id: '3' } },
      { kind: 'update', table: '"public"."acct"', identity: 'key', key: { id: '1' }, new: { id: '1', v: '-1' } },
    ], 'the whole transaction: the DELETE that would have applied, and the UPDATE that fails');
    assert.ok(lines.some((l) => l.includes('apply.onDeterministicError is quarantine')), 'a warning says why');
    assert.equal(await p.dst.unsafe(`SELECT 1 FROM pgtide.last_error WHERE subscription = 'q_auto' AND NOT retrying`).then((r) => r.length), 0, 'not recorded as a stop');

    const file = writeConfigFile(scope, cliConfig(p, input as unknown as Record<string, unknown>));
    const dropped = await runCli(scope, ['quarantine', 'drop', '--config', file, '--id', held[0]!.id]);
    assert.equal(dropped.code, 0, dropped.stderr);
    const list = await runCli(scope, ['quarantine', 'list', '--config', file, '--json']);
    assert.deepEqual((JSON.parse(list.stdout) as { sourceXid: string }[]).map((r) => r.sourceXid), [bad2]);
    const again = await runCli(scope, ['quarantine', 'drop', '--config', file, '--id', held[0]!.id]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /QUARANTINE_NOT_FOUND/);

    // Once the target accepts it, the replay applies the DELETE and the UPDATE and empties the quarantine.
    await p.dst.unsafe(`ALTER TABLE acct DROP CONSTRAINT acct_v_nonneg`);
    const replayed = await runCli(scope, ['quarantine', 'replay', '--config', file, '--id', held[1]!.id]);
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.deepEqual([...await p.dst.unsafe(`SELECT id, v FROM acct ORDER BY id`)], [{ id: 1, v: -1 }, { id: 5, v: 5 }]);
    assert.deepEqual([...await p.src.unsafe(`SELECT id, v FROM acct ORDER BY id`)], [{ id: 1, v: -1 }, { id: 2, v: -2 }, { id: 5, v: 5 }], 'only the dropped insert of row 2 is missing on the target');
    assert.equal((await p.dst.unsafe(`SELECT count(*)::int AS n FROM pgtide.quarantine WHERE subscription = 'q_auto'`))[0]!.n, 0);
    await running.stop();
  });

  it('pgtide skip --lsn quarantines the transaction named by its commit LSN; bad --lsn values are refused', async () => {
    const p = await databasePair(scope, pair, 'lsn');
    await ddlBoth(p, CHECK_DDL);
    await p.dst.unsafe(TARGET_CHECK);
    // batchMaxAgeMs 0: every source transaction is its own batch, so the stop names exactly one.
    const input = configInput(p, { name: 'q_lsn', tables: ['acct'], apply: { batchMaxAgeMs: 0 } });
    const config = parseConfig(input);
    const running = startEngine(scope, config);
    await withTimeout(running.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: running });
    await insertTx(p, 'acct', [[1, 1]]);
    const badXid = await insertTx(p, 'acct', [[2, -2]]);
    await insertTx(p, 'acct', [[3, 3]]);
    const error = await stoppedWith(running);
    const named = new RegExp(`source transaction xid ${badXid}, commit LSN ([0-9A-F]+/[0-9A-F]+)`).exec(error.message);
    assert.ok(named, `the stop names the one transaction: ${error.message}`);
    const lsn = named[1]!;

    const file = writeConfigFile(scope, cliConfig(p, input as unknown as Record<string, unknown>));
    const garbage = await runCli(scope, ['skip', '--config', file, '--lsn', 'yesterday']);
    assert.equal(garbage.code, 1);
    assert.match(garbage.stderr, /CONFIG_INVALID.*not an LSN/);
    const behind = await runCli(scope, ['skip', '--config', file, '--lsn', '0/10']);
    assert.equal(behind.code, 1);
    assert.match(behind.stderr, /NOTHING_TO_SKIP.*already behind the applied position/);
    const skip = await runCli(scope, ['skip', '--config', file, '--lsn', lsn]);
    assert.equal(skip.code, 0, skip.stderr);
    assert.match(skip.stdout, new RegExp(`quarantines the source transaction committed at ${lsn.replace('/', '\\/')}`));

    const resumed = startEngine(scope, config);
    await withTimeout(resumed.streaming, 60_000, 'streaming after skip --lsn');
    await waitForCatchUp(p, { engine: resumed });
    assert.deepEqual([...await p.dst.unsafe(`SELECT id FROM acct ORDER BY id`)].map((r) => r.id), [1, 3]);
    const held = await p.dst.unsafe<{ source_xid: string; commit_lsn: string; error_message: string }[]>(
      `SELECT source_xid::text, commit_lsn::text, error_message FROM pgtide.quarantine WHERE subscription = 'q_lsn'`);
    assert.equal(held.length, 1);
    assert.equal(held[0]!.source_xid, badXid);
    assert.equal(held[0]!.commit_lsn, lsn);
    assert.match(held[0]!.error_message, new RegExp(`skipped by pgtide skip --lsn ${lsn.replace('/', '\\/')}; apply had stopped with: .*acct_v_nonneg`));
    await resumed.stop();
  });

  it('delta columns on a two-way pair: concurrent increments on both nodes converge; refused without REPLICA IDENTITY FULL or a numeric type', async () => {
    const ab = await databasePair(scope, pair, 'delta');
    const ba = { src: ab.dst, dst: ab.src, sourceUrl: ab.targetUrl, targetUrl: ab.sourceUrl };
    const [A, B] = [ab.src, ab.dst];
    const ddl = `CREATE TABLE acct (id int PRIMARY KEY, balance numeric NOT NULL, hits bigint NOT NULL DEFAULT 0, note text);
      ALTER TABLE acct REPLICA IDENTITY FULL;
      CREATE TABLE plain (id int PRIMARY KEY, n int, label text)`;
    await A.unsafe(ddl);
    await B.unsafe(ddl);
    await B.unsafe(`ALTER SEQUENCE pgtide_test_marker_id_seq RESTART WITH 1000000000`);
    await A.unsafe(`INSERT INTO acct SELECT i, 100, 0, 'n' FROM generate_series(1, 5) AS i`);

    // Refused at start, all problems named at once: a table without REPLICA IDENTITY FULL, a text column.
    const refused = startEngine(scope, parseConfig(configInput(ab, {
      name: 'd_refused', tables: ['acct', 'plain'], origins: 'none',
      conflicts: { deltaColumns: { 'public.plain': ['n'], 'public.acct': ['note'] } },
    })));
    const error = await stoppedWith(refused);
    assert.equal(error.code, 'DELTA_COLUMNS_REFUSED');
    assert.match(error.message, /"public"."plain" has REPLICA IDENTITY DEFAULT on the source.*REPLICA IDENTITY FULL/);
    assert.match(error.message, /column "note" of "public"."acct" is text on the source, not a numeric type/);

    const delta = { deltaColumns: { 'public.acct': ['balance', 'hits'] } };
    const edgeAB = startEngine(scope, parseConfig(configInput(ab, { name: 'd_ab', tables: ['acct'], origins: 'none', conflicts: delta })));
    await withTimeout(edgeAB.streaming, 60_000, 'A → B streaming');
    const edgeBA = startEngine(scope, parseConfig(configInput(ba, { name: 'd_ba', tables: ['acct'], origins: 'none', conflicts: delta, copy: { enabled: false } })));
    await withTimeout(edgeBA.streaming, 60_000, 'B → A streaming');
    await waitForCatchUp(ab, { engine: edgeAB });
    await waitForCatchUp(ba, { engine: edgeBA });

    // Both nodes increment the same rows at the same time; each UPDATE's old row on the other
    // node is stale by then, so writing the new value would lose the other node's increments.
    const rounds = 40;
    const bump = (sql: typeof A, by: number) => (async () => {
      for (let i = 0; i < rounds; i++) await sql.unsafe(`UPDATE acct SET balance = balance + $1, hits = hits + 1 WHERE id = $2`, [by, (i % 5) + 1]);
    })();
    await Promise.all([bump(A, 1), bump(B, 2.5)]);
    await waitForCatchUp(ab, { engine: edgeAB, timeoutMs: 90_000 });
    await waitForCatchUp(ba, { engine: edgeBA, timeoutMs: 90_000 });
    await waitForCatchUp(ab, { engine: edgeAB, timeoutMs: 90_000 });

    await assertTablesEqual(ab, 'acct', { orderBy: 't.id' });
    const [sum] = await A.unsafe<{ balance: string; hits: string }[]>(`SELECT sum(balance)::text AS balance, sum(hits)::text AS hits FROM acct`);
    assert.deepEqual({ balance: Number(sum!.balance), hits: Number(sum!.hits) }, { balance: 500 + rounds * 1 + rounds * 2.5, hits: 2 * rounds }, 'every increment of both nodes counted once');
    assert.equal(edgeAB.finished || edgeBA.finished, false, `both edges keep running: ${String(edgeAB.error ?? edgeBA.error)}`);
    await edgeAB.stop();
    await edgeBA.stop();
  });

  it('a REPLICA IDENTITY FULL change that waits for a local write on its row applies to the row that write left (no false update_missing)', async () => {
    const ab = await databasePair(scope, pair, 'fullwait');
    const ddl = `CREATE TABLE acct (id int PRIMARY KEY, balance numeric NOT NULL, note text); ALTER TABLE acct REPLICA IDENTITY FULL`;
    await ab.src.unsafe(ddl);
    await ab.dst.unsafe(ddl);
    await ab.src.unsafe(`INSERT INTO acct VALUES (1, 100, 'n')`);
    const edge = startEngine(scope, parseConfig(configInput(ab, { name: 'fullwait', tables: ['acct'], conflicts: { deltaColumns: { 'public.acct': ['balance'] } } })));
    await withTimeout(edge.streaming, 60_000, 'streaming');
    await waitForCatchUp(ab, { engine: edge });
    // A local write on the target holds the row; the source's change arrives meanwhile and must wait
    // for it, then apply its difference to the version that write left (at another ctid).
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    const local = ab.dst.begin(async (tx) => {
      await tx.unsafe(`UPDATE acct SET balance = balance + 5 WHERE id = 1`);
      await held;
    });
    await ab.src.unsafe(`UPDATE acct SET balance = balance + 1 WHERE id = 1`);
    await waitFor('the apply session waits for the local row lock', async () => {
      const rows = await ab.dst.unsafe(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgtide-apply' AND wait_event_type = 'Lock'`);
      return rows.length > 0 ? true : undefined;
    }, { timeoutMs: 30_000, failFast: () => edge.error });
    release();
    await local;
    await waitForCatchUp(ab, { engine: edge });
    const [row] = await ab.dst.unsafe<{ balance: string }[]>(`SELECT balance::text AS balance FROM acct WHERE id = 1`);
    assert.equal(Number(row!.balance), 106, 'the local +5 and the source\'s +1 both count');
    assert.equal(edge.finished, false, `the edge keeps running: ${String(edge.error)}`);
    await edge.stop();
  });

  it('kill -9 during the skip start: every transaction applied or quarantined exactly once', async () => {
    const p = await databasePair(scope, pair, 'kill');
    // No key and REPLICA IDENTITY FULL: a transaction applied twice would show as a duplicate row.
    await ddlBoth(p, `CREATE TABLE ev (n int, v int); ALTER TABLE ev REPLICA IDENTITY FULL`);
    await p.dst.unsafe(`ALTER TABLE ev ADD CONSTRAINT ev_v_nonneg CHECK (v >= 0)`);
    const input = configInput(p, { name: 'q_kill', tables: ['ev'], apply: { batchMaxAgeMs: 2000 } });
    const first = startEngine(scope, parseConfig(input));
    await withTimeout(first.streaming, 60_000, 'streaming');
    await waitForCatchUp(p, { engine: first });
    await first.stop();

    const total = 300;
    const badAt = 200;
    for (let n = 1; n <= total; n++) await p.src.unsafe(`INSERT INTO ev VALUES ($1, $2)`, [n, n === badAt ? -1 : n]);

    const file = writeConfigFile(scope, cliConfig(p, input as unknown as Record<string, unknown>));
    const stopped = await runCli(scope, ['start', '--config', file], { timeoutMs: 120_000 });
    assert.equal(stopped.code, 1, `pgtide stops on the error:\n${stopped.stderr.slice(-2000)}`);
    assert.match(stopped.stderr, /APPLY_CONFLICT/);
    assert.equal((await p.dst.unsafe(`SELECT count(*)::int AS n FROM ev`))[0]!.n, 0, 'the whole batch rolled back');
    assert.equal((await runCli(scope, ['skip', '--config', file])).code, 0);

    const cli = startCli(scope, ['start', '--config', file]);
    const seen = await waitFor('some isolated transactions applied', async () => {
      const [row] = await p.dst.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ev`);
      return row!.n >= 50 ? row!.n : undefined;
    }, { timeoutMs: 120_000, intervalMs: 5, failFast: () => (cli.exitCode !== undefined ? new Error(`pgtide exited early:\n${cli.stderrTail()}`) : undefined) });
    cli.kill('SIGKILL');
    await cli.exited;
    const atKill = (await p.dst.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ev`))[0]!.n;
    assert.ok(atKill < total - 1, `the kill came before the end of the stopped stretch (${atKill} rows at the kill, ${seen} seen)`);
    // Killed before the failing transaction was reached: the restart must find it again.
    assert.equal(atKill < badAt - 1, (await p.dst.unsafe(`SELECT count(*)::int AS n FROM pgtide.quarantine`))[0]!.n === 0, `${atKill} rows at the kill`);

    const resumed = startEngine(scope, parseConfig(input));
    await withTimeout(resumed.streaming, 60_000, 'streaming after the kill');
    await waitForCatchUp(p, { engine: resumed, timeoutMs: 120_000 });
    const [counts] = await p.dst.unsafe<{ rows: number; distinct: number; bad: number }[]>(
      `SELECT count(*)::int AS rows, count(DISTINCT n)::int AS distinct, count(*) FILTER (WHERE n = ${badAt})::int AS bad FROM ev`);
    assert.deepEqual({ ...counts }, { rows: total - 1, distinct: total - 1, bad: 0 });
    const held = await p.dst.unsafe<{ changes: unknown }[]>(`SELECT changes FROM pgtide.quarantine WHERE subscription = 'q_kill'`);
    assert.equal(held.length, 1, 'one quarantined transaction');
    assert.deepEqual(held[0]!.changes, [{ kind: 'insert', table: '"public"."ev"', new: { n: String(badAt), v: '-1' } }]);
    await resumed.stop();
  });
});
