/**
 * The local row's last writer (origin and commit time from xmin) in conflict
 * detection (docs/conflicts.md, "Time-based policies"): update_origin_differs
 * and delete_origin_differs under skip and apply_remote; last_update_wins and
 * first_update_wins with local writes older and newer than the source's
 * changes, two source transactions of one batch on one key, the tie-break by
 * node order, the initial copy's rows (the edge's own origin, older than
 * anything), and the refusal when track_commit_timestamp is off.
 *
 * One cluster pair (the target tracks commit timestamps, the source does
 * not), one database per case.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, type ConfigInput } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';
import { lsn } from '../../src/core/lsn.js';
import { RelationCache } from '../../src/changes/relation-cache.js';
import type { TransactionInfo } from '../../src/changes/change.js';
import type { PgTimestamp } from '../../src/protocol/messages.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import type { ConflictPolicy } from '../../src/apply/conflict-policy.js';
import { remoteWins, UNLISTED_RANK, writerOfOrigin } from '../../src/apply/conflict-time.js';
import { remoteWinsSql, updateCheckingOrigin } from '../../src/sinks/postgres/conflict-time-statements.js';
import {
  TestScope, startPair, databasePair, ddlBoth, startEngine, configInput, withTimeout, waitFor, waitForCatchUp,
  assertTablesEqual, texts, writeConfigFile, cliConfig, runCli, pinnedSql, MARKER_TABLE, type Pair, type RunningEngine,
} from '../support/replication.js';

interface LogRow {
  kind: string;
  resolution: string;
  table_name: string;
  key: Record<string, string>;
  remote_new: Record<string, string> | null;
  local_row: Record<string, unknown> | null;
  local_origin: string | null;
  local_commit_time: Date | null;
  source_xid: string;
  source_commit_time: Date | null;
  /** Both commit times in microseconds (a Date keeps milliseconds only). */
  local_us: string | null;
  source_us: string | null;
}

async function conflictLog(p: Pair, table: string): Promise<LogRow[]> {
  return [...await p.dst.unsafe<LogRow[]>(
    `SELECT kind, resolution, table_name, key, remote_new, local_row, local_origin, local_commit_time, source_xid::text AS source_xid, source_commit_time,
            (extract(epoch FROM local_commit_time) * 1000000)::bigint::text AS local_us, (extract(epoch FROM source_commit_time) * 1000000)::bigint::text AS source_us
       FROM pgtide.conflict_log WHERE table_name = $1 ORDER BY (key->>'id')::int, source_commit_time`, [table])];
}

const brief = (rows: readonly LogRow[]): string[] => rows.map((r) => `${r.key['id']} ${r.kind} ${r.resolution}`);

/** Each copied or applied row's writer on the target: `origin@time` (origin '-' for a local write). */
async function writers(p: Pick<Pair, 'dst'>, table: string): Promise<string[]> {
  return texts(p.dst, `SELECT t.id || ' ' || coalesce(o.roname, '-') || '@' || coalesce(x."timestamp"::text, 'null') AS r
                         FROM ${table} t LEFT JOIN LATERAL pg_xact_commit_timestamp_origin(t.xmin) x ON true
                         LEFT JOIN pg_replication_origin o ON o.roident = x.roident ORDER BY t.id`);
}

async function originOf(p: Pair, subscription: string): Promise<string> {
  const [oid] = await texts(p.dst, `SELECT oid::text AS r FROM pg_database WHERE datname = current_database()`);
  return `pgtide_${subscription}_${oid}`;
}

async function started(scope: TestScope, p: Pick<Pair, 'src' | 'dst'>, config: ReturnType<typeof parseConfig>, hooks: Parameters<typeof startEngine>[2] = {}): Promise<RunningEngine> {
  const running = startEngine(scope, config, hooks);
  await withTimeout(running.streaming, 90_000, 'streaming');
  await waitForCatchUp(p, { engine: running });
  return running;
}

/** One source transaction; returns its xid (as pgoutput and the log carry it). */
async function sourceTx(p: Pair, sql: string): Promise<string> {
  return p.src.begin(async (tx) => {
    await tx.unsafe(sql);
    const [row] = await tx.unsafe<{ xid: string }[]>(`SELECT (txid_current() % 4294967296)::text AS xid`);
    return row!.xid;
  }) as Promise<string>;
}

/** A target transaction committed under replication origin `origin` with commit time `time`: a write another edge made. */
async function writeAs(p: Pair, origin: string, time: string, sql: string): Promise<void> {
  await p.dst.unsafe(`SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`, [origin]);
  await p.dst.begin(async (tx) => {
    await tx.unsafe(`SELECT pg_replication_origin_session_setup($1)`, [origin]);
    await tx.unsafe(`SELECT pg_replication_origin_xact_setup('0/0', $1::text::timestamptz)`, [time]);
    await tx.unsafe(sql);
  });
  await p.dst.unsafe(`SELECT pg_replication_origin_session_reset()`).catch(() => {});
}

describe('conflicts: the local row\'s origin and commit time, origin_differs, last/first_update_wins', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;

  before(async () => {
    pair = await startPair(scope, { name: 'conflicts-time', targetSettings: { track_commit_timestamp: 'on' } });
  });
  after(() => scope.cleanup());

  it('detectOriginDiffers: update/delete_origin_differs under skip and apply_remote, logged with the local origin; the edge\'s own rows are no conflict', async () => {
    const p = await databasePair(scope, pair, 'od');
    await ddlBoth(p, `CREATE TABLE sk (id int PRIMARY KEY, v text); CREATE TABLE ar (id int PRIMARY KEY, v text);`);
    await p.src.unsafe(`INSERT INTO sk SELECT g, 'v' || g FROM generate_series(1, 5) g; INSERT INTO ar SELECT g, 'v' || g FROM generate_series(1, 5) g;`);
    const conflicts: ConfigInput['conflicts'] = { policy: 'skip', tables: { 'public.ar': 'apply_remote' }, detectOriginDiffers: true };
    const config = parseConfig(configInput(p, { name: 'od', tables: ['sk', 'ar'], conflicts }));
    const running = await started(scope, p, config);
    const origin = await originOf(p, 'od');
    assert.deepEqual(await writers(p, 'sk'), [1, 2, 3, 4, 5].map((id) => `${id} ${origin}@-infinity`),
      'the initial copy committed under the edge\'s origin, older than anything');

    // Rows the stream wrote (insert, then update in another transaction) are the edge's own.
    await p.src.unsafe(`INSERT INTO sk VALUES (10, 'a'); INSERT INTO ar VALUES (10, 'a')`);
    await waitForCatchUp(p, { engine: running });
    await p.dst.unsafe(`UPDATE sk SET v = 'local' WHERE id IN (1, 2); UPDATE ar SET v = 'local' WHERE id IN (1, 2)`);
    await writeAs(p, 'pgtide_other_1', '2030-01-01 00:00:00+00', `UPDATE sk SET v = 'other' WHERE id = 4; UPDATE ar SET v = 'other' WHERE id = 4`);
    await p.src.unsafe(`UPDATE sk SET v = 'remote' WHERE id IN (1, 3, 4, 10); UPDATE ar SET v = 'remote' WHERE id IN (1, 3, 4, 10)`);
    await p.src.unsafe(`DELETE FROM sk WHERE id = 2; DELETE FROM ar WHERE id = 2`);
    await waitForCatchUp(p, { engine: running });

    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM sk ORDER BY id`), ['1:local', '2:local', '3:remote', '4:other', '5:v5', '10:remote'], 'skip keeps the local rows');
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM ar ORDER BY id`), ['1:remote', '3:remote', '4:remote', '5:v5', '10:remote'], 'apply_remote applies');
    await assertTablesEqual(p, 'ar');
    const sk = await conflictLog(p, '"public"."sk"');
    assert.deepEqual(brief(sk), ['1 update_origin_differs skip', '2 delete_origin_differs skip', '4 update_origin_differs skip'], 'rows the copy or the stream wrote (3, 10) are not conflicts');
    const ar = await conflictLog(p, '"public"."ar"');
    assert.deepEqual(brief(ar), ['1 update_origin_differs apply_remote', '2 delete_origin_differs apply_remote', '4 update_origin_differs apply_remote']);
    for (const row of [...sk, ...ar]) {
      assert.ok(row.local_commit_time instanceof Date, 'the local row\'s commit time is logged');
      assert.ok(row.source_commit_time instanceof Date);
    }
    assert.equal(sk[0]!.local_origin, null, 'a local write has no origin');
    assert.equal(sk[0]!.local_row?.['v'], 'local');
    assert.deepEqual(sk[0]!.remote_new, { id: '1', v: 'remote' });
    assert.equal(sk[2]!.local_origin, 'pgtide_other_1', 'another edge\'s write is logged with its origin');
    assert.equal(sk[2]!.local_commit_time?.toISOString(), '2030-01-01T00:00:00.000Z');
    assert.equal(sk[1]!.remote_new, null);
    await running.stop();
  });

  it('last_update_wins and first_update_wins: local writes older and newer than the source\'s changes, on UPDATE, DELETE and INSERT; each row judged by its own transaction', async () => {
    const p = await databasePair(scope, pair, 'tp');
    await ddlBoth(p, `CREATE TABLE lww (id int PRIMARY KEY, v text); CREATE TABLE fuw (id int PRIMARY KEY, v text);`);
    await p.src.unsafe(`INSERT INTO lww SELECT g, 'v' || g FROM generate_series(1, 8) g; INSERT INTO fuw SELECT g, 'v' || g FROM generate_series(1, 8) g;`);
    const conflicts: ConfigInput['conflicts'] = { policy: 'last_update_wins', tables: { 'public.fuw': 'first_update_wins' } };
    // Batches close after 1 s: the catch-up below (a few ms of source transactions) is one target transaction.
    const config = parseConfig(configInput(p, { name: 'tp', tables: ['lww', 'fuw'], conflicts, apply: { batchMaxAgeMs: 1000 } }));
    const first = await started(scope, p, config);
    // A change to a copied row is the edge's own: applied under both policies, nothing logged.
    await p.src.unsafe(`UPDATE lww SET v = 'streamed' WHERE id = 1; UPDATE fuw SET v = 'streamed' WHERE id = 1`);
    await waitForCatchUp(p, { engine: first });
    await first.stop();

    // While pgtide is stopped, source and target write the same rows in a known order of commit times.
    const both = (sql: string): string => `${sql.replaceAll('$T', 'lww')}; ${sql.replaceAll('$T', 'fuw')}`;
    await p.dst.unsafe(both(`UPDATE $T SET v = 'local-old' WHERE id = 2`));
    await p.src.unsafe(both(`UPDATE $T SET v = 'remote-new' WHERE id = 2`));
    await p.src.unsafe(both(`UPDATE $T SET v = 'remote-old' WHERE id = 3`));
    await p.dst.unsafe(both(`UPDATE $T SET v = 'local-new' WHERE id = 3`));
    await p.dst.unsafe(both(`UPDATE $T SET v = 'local-old' WHERE id = 4`));
    await p.src.unsafe(both(`DELETE FROM $T WHERE id = 4`));
    await p.src.unsafe(both(`DELETE FROM $T WHERE id = 5`));
    await p.dst.unsafe(both(`UPDATE $T SET v = 'local-new' WHERE id = 5`));
    await p.dst.unsafe(both(`INSERT INTO $T VALUES (20, 'local-old')`));
    await p.src.unsafe(both(`INSERT INTO $T VALUES (20, 'remote-new')`));
    await p.src.unsafe(both(`INSERT INTO $T VALUES (21, 'remote-old')`));
    await p.dst.unsafe(both(`INSERT INTO $T VALUES (21, 'local-new')`));
    // Key 6: source transaction 1, then a local write, then source transaction 2; they arrive in one catch-up.
    const tx1 = await sourceTx(p, both(`UPDATE $T SET v = 'tx1' WHERE id = 6`));
    await p.dst.unsafe(both(`UPDATE $T SET v = 'local-mid' WHERE id = 6`));
    const tx2 = await sourceTx(p, both(`UPDATE $T SET v = 'tx2' WHERE id = 6`));

    const second = await started(scope, p, config);
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM lww ORDER BY id`),
      ['1:streamed', '2:remote-new', '3:local-new', '5:local-new', '6:tx2', '7:v7', '8:v8', '20:remote-new', '21:local-new']);
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM fuw ORDER BY id`),
      ['1:streamed', '2:local-old', '3:remote-old', '4:local-old', '6:tx2', '7:v7', '8:v8', '20:local-old', '21:remote-old']);

    const lww = await conflictLog(p, '"public"."lww"');
    assert.deepEqual(brief(lww), [
      '2 update_origin_differs apply_remote', '3 update_origin_differs skip', '4 delete_origin_differs apply_remote', '5 delete_origin_differs skip',
      '6 update_origin_differs skip', '6 update_origin_differs apply_remote', '20 insert_exists apply_remote', '21 insert_exists skip',
    ]);
    const fuw = await conflictLog(p, '"public"."fuw"');
    assert.deepEqual(brief(fuw), [
      '2 update_origin_differs skip', '3 update_origin_differs apply_remote', '4 delete_origin_differs skip', '5 delete_origin_differs apply_remote',
      '6 update_origin_differs apply_remote', '20 insert_exists skip', '21 insert_exists apply_remote',
    ], 'key 6 under first_update_wins: transaction 1 is older than the local write and wins; transaction 2 then meets the edge\'s own row');
    for (const row of [...lww, ...fuw]) {
      assert.ok(row.local_commit_time instanceof Date && row.source_commit_time instanceof Date, 'both commit times are logged');
      assert.equal(row.local_origin, null);
      const remoteNewer = BigInt(row.source_us!) > BigInt(row.local_us!);
      const policyKeepsRemote = row.table_name === '"public"."lww"' ? remoteNewer : !remoteNewer;
      assert.equal(row.resolution, policyKeepsRemote ? 'apply_remote' : 'skip', `${row.table_name} key ${row.key['id']}: the resolution follows the logged times`);
    }
    assert.deepEqual(await texts(p.dst, `SELECT count(DISTINCT xmin::text)::text AS r FROM lww WHERE id IN (2, 6, 20)`), ['1'], 'the catch-up was applied in one batch');
    // Key 6 under last_update_wins: each of the two transactions was compared with its own commit time.
    const six = lww.filter((r) => r.key['id'] === '6');
    assert.deepEqual(six.map((r) => r.source_xid), [tx1, tx2]);
    assert.ok(BigInt(six[0]!.source_us!) < BigInt(six[0]!.local_us!) && BigInt(six[1]!.source_us!) > BigInt(six[1]!.local_us!),
      'transaction 1 is older than the local write and transaction 2 newer, although both were applied in one catch-up');
    await second.stop();

    // Equal commit times: a tie cannot be forced through a live source, so the statement is run
    // directly, with rows that two other edges (aa, zz) wrote at exactly the remote change's time.
    await p.dst.unsafe(`CREATE TABLE tie (id int PRIMARY KEY, v text)`);
    const at = '2026-01-01 00:00:00+00';
    await writeAs(p, 'pgtide_aa_1', at, `INSERT INTO tie VALUES (1, 'aa')`);
    await writeAs(p, 'pgtide_zz_1', at, `INSERT INTO tie VALUES (2, 'zz')`);
    await writeAs(p, 'pgtide_zz_1', '2026-01-01 00:00:00.000001+00', `INSERT INTO tie VALUES (3, 'zz-later')`);
    await p.dst.unsafe(`SELECT pg_replication_origin_create('pgtide_mid_1')`);
    const commitTime = (BigInt(Date.parse('2026-01-01T00:00:00Z')) - BigInt(Date.parse('2000-01-01T00:00:00Z'))) * 1000n;
    const source: TransactionInfo = { xid: 4242, commitLsn: lsn(0x1000000n), commitTime: commitTime as PgTimestamp, origin: undefined, streamed: false };
    const tieTable = tableTie();
    const text = (v: string) => [{ kind: 'text' as const, value: v }];
    const rows = [1, 2, 3].map((id) => ({ key: [String(id)], newTuple: [...text(String(id)), ...text('mid')] }));
    for (const [policy, expected] of [['last_update_wins', ['1:aa', '2:mid', '3:zz-later']], ['first_update_wins', ['1:aa', '2:mid', '3:mid']]] as const) {
      const statement = updateCheckingOrigin(tieTable, [1], rows, [source, source, source], { policy, subscription: 'mid', originName: 'pgtide_mid_1', nodeOrder: ['aa', 'mid', 'zz'] });
      assert.ok(statement);
      const outcome = await p.dst.begin(async (tx) => {
        const logged = await tx.unsafe<{ kind: string; resolution: string }[]>(statement.text, statement.params as string[]);
        const table = await texts(tx as unknown as typeof p.dst, `SELECT id || ':' || v AS r FROM tie ORDER BY id`);
        throw Object.assign(new Error('rollback'), { outcome: { logged: logged.map((r) => `${r.kind} ${r.resolution}`), table } });
      }).catch((e: { outcome?: { logged: string[]; table: string[] } }) => e.outcome);
      assert.ok(outcome, `${policy}: the statement ran`);
      assert.deepEqual(outcome.table, expected, `${policy}: at equal times aa (listed before mid) keeps its row and zz (after mid) loses it`);
      assert.deepEqual(outcome.logged.sort(), ['update_origin_differs apply_remote', 'update_origin_differs skip', `update_origin_differs ${policy === 'last_update_wins' ? 'skip' : 'apply_remote'}`].sort());
    }
  });

  it('a large streamed transaction is applied at its commit under a time-based policy, judged by its own commit time', async () => {
    const p = await databasePair(scope, pair, 'st');
    await ddlBoth(p, `CREATE TABLE s (id int PRIMARY KEY, v text); CREATE TABLE f (id int PRIMARY KEY, v text)`);
    await p.src.unsafe(`INSERT INTO s VALUES (7, 'init'); INSERT INTO f VALUES (7, 'init')`);
    const config = parseConfig(configInput(p, { name: 'st', tables: ['s', 'f'], conflicts: { policy: 'last_update_wins', tables: { 'public.f': 'first_update_wins' } } }));
    const running = await started(scope, p, config);
    await p.dst.unsafe(`UPDATE s SET v = 'local' WHERE id = 7; UPDATE f SET v = 'local' WHERE id = 7`);
    const xid = await sourceTx(p, `UPDATE s SET v = 'remote' WHERE id = 7; UPDATE f SET v = 'remote' WHERE id = 7;
      INSERT INTO s SELECT g, repeat('r', 100) FROM generate_series(100, 5100) g`);
    await waitForCatchUp(p, { engine: running });
    await waitFor('the source to report a streamed transaction', async () => {
      const [slot] = await p.src.unsafe<{ n: string }[]>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = 'st_slot'`);
      return Number(slot?.n) > 0 ? true : undefined;
    }, { timeoutMs: 15_000 });
    assert.deepEqual(await texts(p.dst, `SELECT 's:' || v AS r FROM s WHERE id = 7 UNION ALL SELECT 'f:' || v FROM f WHERE id = 7`), ['s:remote', 'f:local']);
    const log = [...await conflictLog(p, '"public"."s"'), ...await conflictLog(p, '"public"."f"')];
    assert.deepEqual(brief(log), ['7 update_origin_differs apply_remote', '7 update_origin_differs skip']);
    for (const row of log) {
      assert.equal(row.source_xid, xid);
      assert.ok(row.source_commit_time instanceof Date, 'applied at its commit, with its commit time (not while it streamed)');
      assert.ok(BigInt(row.source_us!) > BigInt(row.local_us!));
    }
    await running.stop();
  });

  it('last_update_wins: a local write that commits while the change waits for its row lock is the one compared', async () => {
    const p = await databasePair(scope, pair, 'rc');
    await ddlBoth(p, `CREATE TABLE r (id int PRIMARY KEY, v text)`);
    await p.src.unsafe(`INSERT INTO r VALUES (1, 'init'), (2, 'init')`);
    const config = parseConfig(configInput(p, { name: 'rc', tables: ['r'], conflicts: { policy: 'last_update_wins' } }));
    const running = await started(scope, p, config);
    const local = await p.dst.reserve();
    try {
      await local.unsafe(`BEGIN; UPDATE r SET v = 'local' WHERE id = 1`);
      await p.src.unsafe(`UPDATE r SET v = 'remote' WHERE id IN (1, 2)`);
      await waitFor('the apply session to wait for the local transaction\'s row lock', async () => {
        const [row] = await p.dst.unsafe<{ n: string }[]>(`SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name = 'pgtide-apply' AND wait_event_type = 'Lock'`);
        return row?.n === '1' ? true : undefined;
      }, { timeoutMs: 30_000 });
      // Committed after the source's change: the newer write.
      await local.unsafe(`COMMIT`);
    } finally {
      local.release();
    }
    await waitForCatchUp(p, { engine: running });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM r ORDER BY id`), ['1:local', '2:remote'], 'the newer local write is kept');
    const log = await conflictLog(p, '"public"."r"');
    assert.deepEqual(brief(log), ['1 update_origin_differs skip']);
    assert.ok(BigInt(log[0]!.local_us!) > BigInt(log[0]!.source_us!));
    await running.stop();
  });

  it('the tie-break and time comparison in SQL agree with apply/conflict-time.ts remoteWins', async () => {
    const times: (bigint | undefined)[] = [undefined, 100n, 200n];
    const ranks = [0, 1, UNLISTED_RANK];
    const cases: { policy: ConflictPolicy; r: (bigint | undefined); l: (bigint | undefined); rr: number; lr: number }[] = [];
    for (const policy of ['last_update_wins', 'first_update_wins', 'skip', 'apply_remote'] as const) {
      for (const r of times) for (const l of times) for (const rr of ranks) for (const lr of ranks) cases.push({ policy, r, l, rr, lr });
    }
    const ts = (t: bigint | undefined): string => (t === undefined ? 'NULL::timestamptz' : `'2000-01-01 00:00:00+00'::timestamptz + ${t} * interval '1 microsecond'`);
    const sql = cases.map((c, i) => `SELECT ${i} AS i, ${remoteWinsSql(c.policy, ts(c.r), ts(c.l), String(c.rr), String(c.lr))} AS wins`).join(' UNION ALL ');
    const rows = await pair.dst.unsafe<{ i: number; wins: boolean }[]>(sql);
    assert.equal(rows.length, cases.length);
    for (const row of rows) {
      const c = cases[row.i]!;
      assert.equal(row.wins, remoteWins(c.policy, { time: c.r, rank: c.rr }, { time: c.l, rank: c.lr }), JSON.stringify({ ...c, r: String(c.r), l: String(c.l) }));
    }
    assert.equal(remoteWins('last_update_wins', { time: 5n, rank: 0 }, { time: 5n, rank: 1 }), true, 'a tie goes to the writer listed first');
    assert.equal(remoteWins('first_update_wins', { time: 5n, rank: 2 }, { time: 5n, rank: 1 }), false);
    assert.equal(remoteWins('last_update_wins', { time: 5n, rank: UNLISTED_RANK }, { time: 5n, rank: UNLISTED_RANK }), false, 'neither listed: the local row stays');
    assert.equal(writerOfOrigin('pgtide_east_west_16384'), 'east_west');
    assert.equal(writerOfOrigin(undefined), 'local');
    assert.equal(writerOfOrigin('other'), 'other');
  });

  it('last_update_wins: a source change made while the table is copied wins over the copied row', async () => {
    const p = await databasePair(scope, pair, 'cw');
    await ddlBoth(p, `CREATE TABLE c (id int PRIMARY KEY, v text)`);
    await p.src.unsafe(`INSERT INTO c SELECT g, 'copied' FROM generate_series(1, 200) g`);
    const config = parseConfig(configInput(p, { name: 'cw', tables: ['c'], conflicts: { policy: 'last_update_wins' } }));
    // After the slot's snapshot and before the copy: the change streams, the copy holds the old row.
    const running = await started(scope, p, config, {
      onSnapshot: async () => { await p.src.unsafe(`UPDATE c SET v = 'during copy' WHERE id IN (1, 200); DELETE FROM c WHERE id = 100`); },
    });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM c WHERE id IN (1, 100, 200) ORDER BY id`), ['1:during copy', '200:during copy']);
    await assertTablesEqual(p, 'c');
    assert.deepEqual(await conflictLog(p, '"public"."c"'), [], 'the copied rows are the edge\'s own: no conflict');
    const origin = await originOf(p, 'cw');
    assert.deepEqual(await texts(p.dst, `SELECT DISTINCT coalesce(o.roname, '-') || '@' || (x."timestamp" = '-infinity') AS r
                                           FROM c t, pg_xact_commit_timestamp_origin(t.xmin) x LEFT JOIN pg_replication_origin o ON o.roident = x.roident
                                          WHERE t.id NOT IN (1, 200)`), [`${origin}@true`]);
    await running.stop();
  });

  it('track_commit_timestamp off: start-up and pgtide check refuse a policy that needs it, naming the setting and the restart', async () => {
    // Two databases of the source cluster, which does not track commit timestamps.
    await Promise.all([pair.source.createDatabase('off_a'), pair.source.createDatabase('off_b')]);
    const endpoints = { sourceUrl: pair.source.urlFor('off_a'), targetUrl: pair.source.urlFor('off_b') };
    for (const db of ['off_a', 'off_b']) {
      const sql = pinnedSql(scope, pair.source, db);
      await sql.unsafe(`CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE ${MARKER_TABLE} (id bigserial PRIMARY KEY)`);
    }
    const conflicts = { policy: 'skip', tables: { 'public.t': 'first_update_wins' } };
    const file = writeConfigFile(scope, cliConfig(endpoints, { name: 'off', tables: ['t'], conflicts }), 'off.yaml');
    const check = await runCli(scope, ['check', '--config', file]);
    assert.equal(check.code, 1, `pgtide check fails; stdout: ${check.stdout} stderr: ${check.stderr}`);
    assert.match(check.stderr, /COMMIT_TIMESTAMP_OFF/);
    assert.match(check.stderr, /track_commit_timestamp/);
    assert.match(check.stderr, /restart/);

    const running = startEngine(scope, parseConfig(configInput(endpoints, { name: 'off', tables: ['t'], conflicts: conflicts as ConfigInput['conflicts'] })));
    await withTimeout(running.done, 60_000, 'the engine did not stop');
    assert.ok(running.error instanceof PgtideError, String(running.error));
    assert.equal(running.error.code, 'COMMIT_TIMESTAMP_OFF', running.error.message);
    assert.equal(running.error.code, 'COMMIT_TIMESTAMP_OFF');
    assert.equal(running.error.retryable, false);
    assert.match(running.error.message, /track_commit_timestamp = on .* restart/);
    const src = pinnedSql(scope, pair.source, 'off_a');
    assert.deepEqual(await texts(src, `SELECT slot_name AS r FROM pg_replication_slots WHERE database = 'off_a'`), [], 'refused before a slot was created');

    const ok = writeConfigFile(scope, cliConfig(endpoints, { name: 'off', tables: ['t'], conflicts: { policy: 'skip' } }), 'ok.yaml');
    const fine = await runCli(scope, ['check', '--config', ok]);
    assert.equal(fine.code, 0, `without a policy that needs it, check passes: ${fine.stderr}`);
  });

  it('A ⇄ B under last_update_wins: crossing writes of one key converge to the later write on both nodes; copied rows are not sent back', async () => {
    // Node A (the source cluster) tracks commit timestamps for this case only: the case before needs it off.
    const admin = pinnedSql(scope, pair.source);
    await admin.unsafe(`ALTER SYSTEM SET track_commit_timestamp = on`);
    await pair.source.restart();
    try {
      const ab = await databasePair(scope, pair, 'tw');
      const ba = { src: ab.dst, dst: ab.src, sourceUrl: ab.targetUrl, targetUrl: ab.sourceUrl };
      const [A, B] = [ab.src, ab.dst];
      await ddlBoth(ab, `CREATE TABLE kv (id int PRIMARY KEY, v text)`);
      // Both nodes insert markers for waitForCatchUp: keep their keys apart.
      await B.unsafe(`ALTER SEQUENCE pgtide_test_marker_id_seq RESTART WITH 1000000000`);
      await A.unsafe(`INSERT INTO kv SELECT g, 'init' FROM generate_series(1, 6) g`);
      // Equal commit times: A wins on both nodes (at B, A's edge is listed before B's own writes; at A, A's own writes before B's edge).
      const configAB = parseConfig(configInput(ab, { name: 'tw_ab', tables: ['kv'], origins: 'none', conflicts: { policy: 'last_update_wins', nodeOrder: ['tw_ab', 'local'] } }));
      const configBA = parseConfig(configInput(ba, { name: 'tw_ba', tables: ['kv'], origins: 'none', copy: { enabled: false }, sequences: { enabled: false }, conflicts: { policy: 'last_update_wins', nodeOrder: ['local', 'tw_ba'] } }));
      let edgeAB = await started(scope, ab, configAB);
      let edgeBA = await started(scope, ba, configBA);
      await waitForCatchUp(ab, { engine: edgeAB });
      assert.deepEqual(await texts(A, `SELECT count(*)::text AS r FROM pgtide.conflict_log`), ['0'], 'the copied rows did not come back to A');
      const writerSet = async (p: Pick<Pair, 'dst'>) => new Set((await writers(p, 'kv')).map((x) => x.replace(/^\d+ /, '')));
      assert.deepEqual([...await writerSet(ba)].map((w) => w.replace(/@.*/, '')), ['-'], 'A\'s rows are still its own writes');
      assert.deepEqual([...await writerSet(ab)], [`${await originOf(ab, 'tw_ab')}@-infinity`], 'B\'s rows are A → B\'s copy');

      await Promise.all([edgeAB.stop(), edgeBA.stop()]);
      // Both edges stopped: every key is written on both nodes, and each node's change crosses the other's.
      for (let id = 1; id <= 6; id++) {
        const [first, second] = id % 2 === 1 ? [A, B] : [B, A];
        await first.unsafe(`UPDATE kv SET v = $1 WHERE id = $2`, [first === A ? 'A' : 'B', id]);
        await second.unsafe(`UPDATE kv SET v = $1 WHERE id = $2`, [second === A ? 'A' : 'B', id]);
      }
      edgeAB = await started(scope, ab, configAB);
      edgeBA = await started(scope, ba, configBA);
      await waitForCatchUp(ab, { engine: edgeAB });
      await waitForCatchUp(ba, { engine: edgeBA });
      await waitForCatchUp(ab, { engine: edgeAB });
      const later = ['1:B', '2:A', '3:B', '4:A', '5:B', '6:A'];
      assert.deepEqual(await texts(A, `SELECT id || ':' || v AS r FROM kv ORDER BY id`), later, 'A holds the later write of each key');
      assert.deepEqual(await texts(B, `SELECT id || ':' || v AS r FROM kv ORDER BY id`), later, 'B holds the later write of each key');
      const logged = async (node: typeof A) => texts(node, `SELECT (key->>'id') || ' ' || kind || ' ' || resolution AS r FROM pgtide.conflict_log ORDER BY (key->>'id')::int`);
      assert.deepEqual(await logged(B), [1, 2, 3, 4, 5, 6].map((id) => `${id} update_origin_differs ${id % 2 === 1 ? 'skip' : 'apply_remote'}`), 'on B, A\'s change meets B\'s write of each key');
      assert.deepEqual(await logged(A), [1, 2, 3, 4, 5, 6].map((id) => `${id} update_origin_differs ${id % 2 === 1 ? 'apply_remote' : 'skip'}`), 'on A, B\'s change meets A\'s write of each key');
      await Promise.all([edgeAB.stop(), edgeBA.stop()]);

      // pgtide check: these tie-break orders agree (A first on both nodes); B first at A does not.
      const files = (orderAtA: string[]) => [
        writeConfigFile(scope, cliConfig(ab, { name: 'tw_ab', tables: ['kv'], origins: 'none', conflicts: { policy: 'last_update_wins', nodeOrder: ['tw_ab', 'local'] } }), 'tw_ab.yaml'),
        writeConfigFile(scope, cliConfig(ba, { name: 'tw_ba', tables: ['kv'], origins: 'none', copy: { enabled: false }, sequences: { enabled: false }, conflicts: { policy: 'last_update_wins', nodeOrder: orderAtA } }), 'tw_ba.yaml'),
      ];
      const agree = await runCli(scope, ['check', ...files(['local', 'tw_ba']).flatMap((f) => ['--config', f])]);
      assert.equal(agree.code, 0, agree.stderr);
      assert.match(agree.stdout, /ok: track_commit_timestamp is on at every target whose conflict settings need it/);
      const disagree = await runCli(scope, ['check', ...files(['tw_ba', 'local']).flatMap((f) => ['--config', f])]);
      assert.equal(disagree.code, 1, disagree.stdout);
      assert.match(disagree.stderr, /CONFIG_INVALID/);
      assert.match(disagree.stderr, /tie-break orders of these configs disagree/);
    } finally {
      await admin.unsafe(`ALTER SYSTEM RESET track_commit_timestamp`);
      await pair.source.restart();
    }
  });
});

function tableTie(): TargetTable {
  const relation = new RelationCache().update({
    tag: 'relation', xid: undefined, relationOid: 7, schema: 'public', name: 'tie', replicaIdentity: 'default',
    columns: [{ name: 'id', isKey: true, typeOid: 23, typeMod: -1 }, { name: 'v', isKey: false, typeOid: 25, typeMod: -1 }],
  });
  return { relation, columns: [
    { name: 'id', sqlType: 'integer', compareAsText: false, identityAlways: false },
    { name: 'v', sqlType: 'text', compareAsText: false, identityAlways: false },
  ], facts: { replicaTriggers: false, keyUnique: true, keyIndexExact: true } };
}
