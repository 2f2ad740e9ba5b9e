/**
 * The custom conflict resolver (docs/conflicts.md, "Custom resolver"): each
 * decision (skip, apply_remote, merge, error) for insert_exists and
 * update_missing (and delete_missing, and a REPLICA IDENTITY FULL table),
 * with the log rows and the target's rows checked; a resolver that throws or
 * returns nonsense stops with CONFLICT_RESOLVER_FAILED naming the module, the
 * table and the key; a bad module path is a config error at start; kill -9
 * while batches with resolved conflicts commit logs each conflict once.
 * The probe is optimistic (resolver-apply.ts): a batch with many runs of a
 * custom table whose early run conflicts rolls back and is replayed with the
 * table awaited, and kill -9 during such replays still logs each conflict once.
 *
 * One cluster pair, one database per case; the resolvers are small .mjs
 * files written into a temp dir.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/control/config.js';
import { collectStatus, formatStatus } from '../../src/control/status.js';
import { ApplyWriter } from '../../src/sinks/postgres/apply-writer.js';
import { ResolverModes, ResolverReplayError } from '../../src/sinks/postgres/resolver-replay.js';
import { StateStore } from '../../src/state/state-store.js';
import { RelationCache } from '../../src/changes/relation-cache.js';
import type { OpId, TransactionInfo } from '../../src/changes/change.js';
import type { PgTimestamp, Tuple } from '../../src/protocol/messages.js';
import { lsn } from '../../src/core/lsn.js';
import {
  TestScope, startPair, databasePair, ddlBoth, startEngine, configInput, withTimeout, waitFor, waitForCatchUp,
  texts, writeConfigFile, cliConfig, startCli, runCli, capturingLogger, testLogger, type Pair,
} from '../support/replication.js';
import { finishLoggedOnce, killWhileLogging, loggedConflicts, slotOnly } from '../support/conflict-kills.js';
import { conflictLog, stoppedWith, streamingPair } from '../support/conflict-setup.js';



/**
 * Decides by the key's last digit: 1 skip, 2 apply_remote, 3 merge (a row that shows what the
 * resolver was given), 7 returns nonsense, 8 throws, 9 stops; delete_missing is skipped.
 */
const RESOLVER = `
export default function resolve(c) {
  if (c.kind === 'delete_missing') return 'skip';
  const id = Number(Object.values(c.key)[0]);
  switch (id % 10) {
    case 1: return 'skip';
    case 2: return { action: 'apply_remote' };
    case 3: return c.kind === 'insert_exists'
      ? { action: 'merge', row: { v: [c.local.row.v, c.remote.new.v, c.local.commitTime === null ? 'no-time' : 'time', typeof c.source.xid, c.source.commitLsn === null ? 'no-lsn' : 'lsn', Object.isFrozen(c.remote.new)].join('|') } }
      : { action: 'merge', row: c.table.name === 'fu' ? { b: 'merged:' + c.remote.new.b } : { v: 'merged:' + c.remote.new.v } };
    case 7: return 42;
    case 8: throw new Error('resolver bug on ' + id);
    case 9: return { action: 'error', reason: 'id ' + id + ' needs a person' };
    default: return 'skip';
  }
}
`;

function writeResolver(scope: TestScope, text: string, name = 'resolver.mjs'): string {
  const file = path.join(scope.tempDir('pgtide-resolver-'), name);
  writeFileSync(file, text);
  return file;
}

const TABLES = `CREATE TABLE ins (id int PRIMARY KEY, v text);
  CREATE TABLE upd (id int PRIMARY KEY, v text, n int DEFAULT -1);
  CREATE TABLE del (id int PRIMARY KEY, v text);
  CREATE TABLE fu (a int, b text); ALTER TABLE fu REPLICA IDENTITY FULL;`;

const SETUP = {
  ddl: TABLES,
  rows: `INSERT INTO upd SELECT g, 'v' || g, g FROM generate_series(1, 5) g; INSERT INTO del SELECT g, 'v' || g FROM generate_series(1, 3) g;
    INSERT INTO fu VALUES (1, 'x'), (2, 'y'), (3, 'z');`,
  tables: ['ins', 'upd', 'del', 'fu'],
};

/**
 * The CLI config of the kill -9 cases on table k (id, v, …): a resolver module beside it takes the
 * remote row for an even id and merges v (local+remote) for an odd one.
 */
function kConfig(scope: TestScope, p: Pair, name: string, apply: { readonly batchMaxTransactions: number; readonly batchMaxAgeMs: number }): string {
  const dir = scope.tempDir('pgtide-resolver-cli-');
  writeFileSync(path.join(dir, 'k-resolver.mjs'), `export default (c) => (Number(c.key.id) % 2 === 0 ? 'apply_remote' : { action: 'merge', row: { v: c.local.row.v + '+' + c.remote.new.v } });`);
  const file = path.join(dir, 'pgtide.yaml');
  writeFileSync(file, JSON.stringify(cliConfig(p, { name, tables: ['k'], conflicts: { policy: 'custom', resolver: './k-resolver.mjs' }, apply })));
  return file;
}

describe('conflicts: custom resolver', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;
  let resolver: string;

  before(async () => {
    // A small decoding memory on the source: the large transaction of one case is streamed.
    pair = await startPair(scope, { name: 'resolver', targetSettings: { track_commit_timestamp: 'on' }, sourceSettings: { logical_decoding_work_mem: '64kB' } });
    resolver = writeResolver(scope, RESOLVER);
  });
  after(() => scope.cleanup());

  it('skip, apply_remote and merge for insert_exists, update_missing (keyed and FULL) and delete_missing, each logged as custom:<decision>', async () => {
    const { p, running } = await streamingPair(scope, pair, 'r_decide', SETUP, { policy: 'custom', resolver });
    await p.dst.unsafe(`INSERT INTO ins VALUES (1, 'l1'), (2, 'l2'), (3, 'l3'); DELETE FROM upd WHERE id IN (1, 2, 3); DELETE FROM del WHERE id = 2;
      DELETE FROM fu WHERE a IN (2, 3)`);
    await p.src.unsafe(`INSERT INTO ins VALUES (1, 'r1'), (2, 'r2'), (3, 'r3'), (4, 'r4')`);
    await p.src.unsafe(`UPDATE upd SET v = 'new' WHERE id IN (1, 2, 3, 4)`);
    await p.src.unsafe(`DELETE FROM del WHERE id IN (1, 2)`);
    await p.src.unsafe(`UPDATE fu SET b = 'y2' WHERE a = 2; UPDATE fu SET b = 'z2' WHERE a = 3`);
    await p.src.unsafe(`INSERT INTO ins VALUES (5, 'clean')`);
    await waitForCatchUp(p, { engine: running });

    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM ins ORDER BY id`),
      ['1:l1', '2:r2', '3:l3|r3|time|number|lsn|true', '4:r4', '5:clean'], 'insert_exists: 1 kept local, 2 took the remote row, 3 the merged row; the resolver saw the local and remote rows, commit times, the source transaction, frozen input');
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v || ':' || n AS r FROM upd ORDER BY id`),
      ['2:new:2', '3:merged:new:3', '4:new:4', '5:v5:5'], 'update_missing: 1 stays missing, 2 inserted from the remote row, 3 inserted as the remote row with the merged column');
    assert.deepEqual(await texts(p.dst, `SELECT id::text AS r FROM del ORDER BY id`), ['3']);
    assert.deepEqual(await texts(p.dst, `SELECT a || ':' || b AS r FROM fu ORDER BY a`), ['1:x', '2:y2', '3:merged:z2'], 'FULL identity: 2 inserted (apply_remote), 3 inserted merged');

    const log = await conflictLog(p, 'r_decide');
    const summary = log.map((r) => `${r.table_name} ${r.kind} ${JSON.stringify(r.key)} ${r.resolution}`);
    assert.deepEqual(summary, [
      '"public"."del" delete_missing {"id":"2"} custom:skip',
      '"public"."fu" update_missing {"a":"2","b":"y"} custom:apply_remote',
      '"public"."fu" update_missing {"a":"3","b":"z"} custom:merge',
      '"public"."ins" insert_exists {"id":"1"} custom:skip',
      '"public"."ins" insert_exists {"id":"2"} custom:apply_remote',
      '"public"."ins" insert_exists {"id":"3"} custom:merge',
      '"public"."upd" update_missing {"id":"1"} custom:skip',
      '"public"."upd" update_missing {"id":"2"} custom:apply_remote',
      '"public"."upd" update_missing {"id":"3"} custom:merge',
    ]);
    const ins3 = log.find((r) => r.table_name === '"public"."ins"' && r.key.id === '3')!;
    assert.deepEqual(ins3.local_row, { id: 3, v: 'l3' }, 'the local row as to_jsonb gives it');
    assert.deepEqual(ins3.remote_new, { id: '3', v: 'l3|r3|time|number|lsn|true' }, 'a merge logs the merged row as remote_new');
    assert.ok(ins3.local_commit_time instanceof Date, 'the local row\'s commit time (track_commit_timestamp on)');
    assert.match(ins3.source_xid ?? '', /^\d+$/);
    assert.match(ins3.source_commit_lsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    const upd1 = log.find((r) => r.table_name === '"public"."upd"' && r.key.id === '1')!;
    assert.deepEqual(upd1.remote_old, { id: '1' });
    assert.deepEqual(upd1.remote_new, { id: '1', v: 'new', n: '1' }, 'the new row as the source sent it');
    await running.stop();
  });

  it('a resolver that decides error, throws, or returns nonsense stops apply, not retried, naming the module, table and key; nothing of the batch is applied or logged', async () => {
    const { p, running, config } = await streamingPair(scope, pair, 'r_stop', SETUP, { policy: 'error', tables: { 'public.ins': { resolver } } });
    await p.dst.unsafe(`INSERT INTO ins VALUES (9, 'l9')`);
    await p.src.unsafe(`INSERT INTO ins VALUES (10, 'r10'), (9, 'r9')`);
    const decided = await stoppedWith(running);
    assert.equal(decided.code, 'APPLY_CONFLICT');
    assert.equal(decided.retryable, false);
    assert.match(decided.message, /conflict insert_exists on "public"\."ins", key \{"id":"9"\}, source transaction xid \d+, commit LSN [0-9A-F]+\/[0-9A-F]+: the conflict resolver .*resolver\.mjs decided to stop \(id 9 needs a person\)/);
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM ins ORDER BY id`), ['9:l9'], 'the batch rolled back: row 10 is not applied either');

    await p.dst.unsafe(`DELETE FROM ins WHERE id = 9; INSERT INTO ins VALUES (8, 'l8')`);
    await p.src.unsafe(`INSERT INTO ins VALUES (8, 'r8')`);
    const thrown = await stoppedWith(startEngine(scope, config));
    assert.equal(thrown.code, 'CONFLICT_RESOLVER_FAILED');
    assert.equal(thrown.retryable, false);
    assert.match(thrown.message, /the conflict resolver .*resolver\.mjs failed on insert_exists on "public"\."ins", key \{"id":"8"\}, source transaction xid \d+.*: it threw Error: resolver bug on 8/);
    assert.deepEqual(await texts(p.dst, `SELECT v AS r FROM ins WHERE id = 8`), ['l8'], 'the local row stays: the stop rolled back');
    const status = await collectStatus(config);
    assert.equal(status.lastError?.code, 'CONFLICT_RESOLVER_FAILED');
    assert.equal(status.lastError?.retrying, false);
    assert.match(formatStatus(status), /last error\s+CONFLICT_RESOLVER_FAILED.*not retried/);

    await p.dst.unsafe(`DELETE FROM ins WHERE id = 8; INSERT INTO ins VALUES (7, 'l7')`);
    await p.src.unsafe(`INSERT INTO ins VALUES (7, 'r7')`);
    const invalid = await stoppedWith(startEngine(scope, config));
    assert.equal(invalid.code, 'CONFLICT_RESOLVER_FAILED');
    assert.match(invalid.message, /key \{"id":"7"\}.*it returned 42; return 'skip', 'apply_remote', 'error' or \{ action: 'merge', row \}/);
    assert.equal((await conflictLog(p, 'r_stop')).length, 0, 'nothing logged: every batch rolled back');

    // Fixed on the target: the next start applies everything; the error policy of other tables is untouched.
    await p.dst.unsafe(`DELETE FROM ins WHERE id = 7`);
    const fixed = startEngine(scope, config);
    await withTimeout(fixed.streaming, 90_000, 'streaming');
    await waitForCatchUp(p, { engine: fixed });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM ins ORDER BY id`), ['7:r7', '8:r8', '9:r9', '10:r10']);
    await fixed.stop();
  });

  it('a large transaction applied while it streams: the resolver is called with its xid and no commit LSN yet; a stop inside one stops apply', async () => {
    const p = await databasePair(scope, pair, 'r_stream');
    await ddlBoth(p, `CREATE TABLE s (id int PRIMARY KEY, v text)`);
    const running = startEngine(scope, parseConfig(configInput(p, { name: 'r_stream', tables: ['s'], conflicts: { policy: 'custom', resolver } })));
    await withTimeout(running.streaming, 90_000, 'streaming');
    await waitForCatchUp(p, { engine: running });
    await p.dst.unsafe(`INSERT INTO s VALUES (13, 'local'), (12, 'local')`);
    const [tx] = await p.src.begin(async (sql) => {
      await sql.unsafe(`INSERT INTO s SELECT g, 'r' || repeat('x', 100) FROM generate_series(1, 3000) g`);
      return sql.unsafe<{ xid: string }[]>(`SELECT (txid_current() % 4294967296)::text AS xid`);
    });
    await waitForCatchUp(p, { engine: running });
    await waitFor('the source to report a streamed transaction', async () => {
      const [slot] = await p.src.unsafe<{ n: string }[]>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = 'r_stream_slot'`);
      return Number(slot?.n) > 0 ? true : undefined;
    }, { timeoutMs: 15_000 });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || (v = 'local|r' || repeat('x', 100) || '|time|number|no-lsn|true') AS r FROM s WHERE id = 13`), ['13:true'], 'merged from what the resolver was given');
    assert.deepEqual(await texts(p.dst, `SELECT (v = 'r' || repeat('x', 100))::text AS r FROM s WHERE id = 12`), ['true'], 'apply_remote');
    assert.equal(Number((await texts(p.dst, `SELECT count(*)::text AS r FROM s`))[0]), 3000);
    const log = await conflictLog(p, 'r_stream');
    assert.deepEqual(log.map((r) => `${r.key.id} ${r.resolution} ${r.source_xid === tx!.xid} ${r.source_commit_lsn}`), ['12 custom:apply_remote true null', '13 custom:merge true null']);

    // A resolver that stops inside a streamed transaction stops apply: the streamed writer's failure is
    // what is reported, not hidden by handing the replication origin back (that was a retry loop).
    await p.dst.unsafe(`INSERT INTO s VALUES (5009, 'local')`);
    await p.src.unsafe(`INSERT INTO s SELECT g, 'r' || repeat('x', 100) FROM generate_series(5001, 8000) g`);
    const stopped = await stoppedWith(running);
    assert.equal(stopped.code, 'APPLY_CONFLICT');
    assert.match(stopped.message, /key \{"id":"5009"\}.*decided to stop \(id 5009 needs a person\)/);
    assert.deepEqual(await texts(p.dst, `SELECT count(*)::text AS r FROM s WHERE id > 5000`), ['1'], 'nothing of the streamed transaction is applied');
  });

  it('a bad resolver module is a config error at start: missing file, no default export, not a function', async () => {
    const p = await databasePair(scope, pair, 'r_load');
    await ddlBoth(p, `CREATE TABLE ins (id int PRIMARY KEY, v text)`);
    const cases: [string, RegExp][] = [
      [path.join(path.dirname(resolver), 'missing.mjs'), /conflict resolver module .*missing\.mjs does not exist/],
      [writeResolver(scope, `export function resolve() { return 'skip'; }`, 'named.mjs'), /named\.mjs has no default export \(it exports resolve\)/],
      [writeResolver(scope, `export default 'skip';`, 'string.mjs'), /default export of the conflict resolver module .*string\.mjs is string, not a function/],
      [writeResolver(scope, `export default function (c) { return c.; }`, 'syntax.mjs'), /syntax\.mjs could not be loaded/],
    ];
    for (const [file, message] of cases) {
      const running = startEngine(scope, parseConfig(configInput(p, { name: 'r_load', tables: ['ins'], conflicts: { policy: 'custom', resolver: file } })));
      const error = await stoppedWith(running);
      assert.equal(error.code, 'CONFIG_INVALID');
      assert.match(error.message, message);
    }
    assert.throws(() => parseConfig(configInput(p, { conflicts: { policy: 'custom' } })), /conflicts\.resolver: policy custom needs a resolver module/);
    assert.throws(() => parseConfig(configInput(p, { conflicts: { tables: { 'public.ins': { policy: 'skip', resolver } } } })), /a resolver decides only under policy custom/);
    assert.throws(() => parseConfig(configInput(p, { conflicts: { detect: false, policy: 'skip' } })), /detect: false turns conflict detection off/);
    // The CLI: a path relative to the config file, which is elsewhere than the working directory.
    const file = writeConfigFile(scope, cliConfig(p, { name: 'r_load', tables: ['ins'], conflicts: { policy: 'custom', resolver: './nowhere.mjs' } }));
    const cli = await runCli(scope, ['start', '--config', file]);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, new RegExp(`CONFIG_INVALID.*${path.dirname(file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/nowhere\\.mjs does not exist`));
  });

  it('optimistic probes: many runs of a custom table in one batch go out pipelined; a conflict in an early run rolls the batch back and replays it with the table awaited; a second replay keeps it awaited (said once)', async () => {
    const p = await databasePair(scope, pair, 'r_optimistic');
    await ddlBoth(p, `CREATE TABLE h (id int PRIMARY KEY, v text, n int)`);
    await p.src.unsafe(`INSERT INTO h VALUES (1, 'hot', 0)`);
    const { lines, logger } = capturingLogger();
    // One source transaction is one batch (flushed by age, long after its last change).
    const running = startEngine(scope, parseConfig(configInput(p, { name: 'r_optimistic', tables: ['h'], conflicts: { policy: 'custom', resolver }, apply: { batchMaxAgeMs: 200 } })), {}, logger);
    await withTimeout(running.streaming, 90_000, 'streaming');
    await waitForCatchUp(p, { engine: running });
    const messages = (): string[] => lines.map((l) => String((JSON.parse(l) as { msg?: unknown }).msg));
    const replays = (): string[] => messages().filter((m) => m.includes('the optimistic probe of "public"."h" found'));
    const awaitedForGood = (): string[] => messages().filter((m) => m.includes('"public"."h" is applied awaited until pgtide restarts'));
    // Runs of h in one batch: an insert, ten one-key updates of the hot row (a key appears once per run), an insert.
    const manyRuns = async (first: number, last: number): Promise<void> => {
      await p.src.begin(async (tx) => {
        await tx.unsafe(`INSERT INTO h VALUES (${first}, 'r${first}', 0)`);
        for (let i = 0; i < 10; i++) await tx.unsafe(`UPDATE h SET n = n + 1 WHERE id = 1`);
        await tx.unsafe(`INSERT INTO h VALUES (${last}, 'r${last}', 0)`);
      });
    };

    await manyRuns(10, 11);
    await waitForCatchUp(p, { engine: running });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v || ':' || n AS r FROM h ORDER BY id`), ['1:hot:10', '10:r10:0', '11:r11:0']);
    assert.equal(replays().length, 0, 'no conflict: nothing replayed');

    // 22: apply_remote. Its probe answers after the ten update runs and the COMMIT were sent behind it.
    await p.dst.unsafe(`INSERT INTO h VALUES (22, 'l22', -1)`);
    await manyRuns(22, 24);
    await waitForCatchUp(p, { engine: running });
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v || ':' || n AS r FROM h WHERE id IN (1, 22, 24) ORDER BY id`), ['1:hot:20', '22:r22:0', '24:r24:0'],
      'the replayed batch applied every run once, the conflict by the resolver');
    assert.equal(replays().length, 1, `one replay: ${lines.join('')}`);
    assert.equal(awaitedForGood().length, 0);

    // 33: merge. A second replay: h stays awaited for the rest of the run.
    await p.dst.unsafe(`INSERT INTO h VALUES (33, 'l33', -1)`);
    await manyRuns(33, 34);
    await waitForCatchUp(p, { engine: running });
    assert.equal(replays().length, 2);
    assert.equal(awaitedForGood().length, 1);
    // Awaited: resolved in place, no further replay, and said only once.
    await p.dst.unsafe(`INSERT INTO h VALUES (42, 'l42', -1)`);
    await manyRuns(42, 44);
    await waitForCatchUp(p, { engine: running });
    assert.equal(replays().length, 2, 'awaited now: no replay');
    assert.equal(awaitedForGood().length, 1, 'said once');
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v || ':' || n AS r FROM h ORDER BY id`),
      ['1:hot:40', '10:r10:0', '11:r11:0', '22:r22:0', '24:r24:0', '33:l33|r33|time|number|lsn|true:-1', '34:r34:0', '42:r42:0', '44:r44:0']);
    const log = await conflictLog(p, 'r_optimistic');
    assert.deepEqual(log.map((r) => `${r.key.id} ${r.kind} ${r.resolution}`), ['22 insert_exists custom:apply_remote', '33 insert_exists custom:merge', '42 insert_exists custom:apply_remote'],
      'each conflict logged once: nothing of a rolled-back batch');
    await running.stop();
  });

  it('the writer: an optimistic probe answered before anything else was sent resolves in place and commits; one answered after later statements fails the batch, which does not commit', async () => {
    const p = await databasePair(scope, pair, 'r_writer');
    await ddlBoth(p, `CREATE TABLE w (id int PRIMARY KEY, v text)`);
    await new StateStore(p.dst, 'r_writer').migrate();
    await p.dst.unsafe(`INSERT INTO w VALUES (2, 'l2'), (4, 'l4')`);
    const writer = await ApplyWriter.open({
      url: p.targetUrl, subscription: 'r_writer', originName: 'pgtide_r_writer', batchMaxTransactions: 1000, batchMaxChanges: 20_000, batchMaxAgeMs: 600_000,
      netEffect: true, copyMinRows: 0, logger: testLogger(), resolverModes: new ResolverModes(),
      conflicts: { policy: 'custom', tables: new Map(), resolver: { module: 'inline', resolve: () => 'apply_remote' } },
    });
    scope.defer('close the writer', () => writer.close());
    const relation = new RelationCache().update({
      tag: 'relation', xid: undefined, relationOid: 4242, schema: 'public', name: 'w', replicaIdentity: 'default',
      columns: [{ name: 'id', isKey: true, typeOid: 23, typeMod: -1 }, { name: 'v', isKey: false, typeOid: 25, typeMod: -1 }],
    });
    const tuple = (id: number, v: string): Tuple => [{ kind: 'text', value: String(id) }, { kind: 'text', value: v }];
    let op = 0;
    const tx = (n: number): TransactionInfo => ({ xid: 1000 + n, commitLsn: lsn(BigInt(0x1000 * n)), commitTime: 1000n as PgTimestamp, origin: undefined, streamed: false });
    const end = (n: number) => ({ commitLsn: lsn(BigInt(0x1000 * n)), endLsn: lsn(BigInt(0x1000 * n + 8)), commitTime: 1000n as PgTimestamp });
    const insert = (id: number, v: string) => writer.change({ kind: 'insert', opId: ++op as OpId, relation, newTuple: tuple(id, v) });
    const update = (id: number, v: string) => writer.change({ kind: 'update', opId: ++op as OpId, relation, oldTuple: undefined, newTuple: tuple(id, v) });
    const progress = async (): Promise<string[]> => texts(p.dst, `SELECT end_lsn::text AS r FROM pgtide.apply_progress WHERE subscription = 'r_writer'`);

    // In place: the run's probe is sent, and nothing else until its answer is back.
    writer.begin(tx(1));
    await insert(1, 'r1');
    await insert(2, 'r2');
    writer.emitAll();
    await sleep(500);
    await update(2, 'after');
    await writer.commit(end(1));
    await writer.commitPending();
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM w ORDER BY id`), ['1:r1', '2:after', '4:l4'], 'resolved (apply_remote) before the later run of the table');
    assert.deepEqual(await progress(), ['0/1008'], 'committed past the COMMIT guard: the conflict was counted down');
    assert.equal(writer.durableLsn, lsn(0x1008n));

    // Not in place: the next run (and the COMMIT) went out behind the probe.
    writer.begin(tx(2));
    await insert(4, 'r4');
    await insert(5, 'r5');
    await update(1, 'late');
    await writer.commit(end(2));
    const failed = await writer.commitPending().then(() => undefined, (error: unknown) => error);
    assert.ok(failed instanceof ResolverReplayError, `a replay is asked for; got ${String(failed)}`);
    assert.equal(failed.table, '"public"."w"');
    assert.equal(failed.untilLsn, lsn(0x2000n));
    assert.deepEqual(await texts(p.dst, `SELECT id || ':' || v AS r FROM w ORDER BY id`), ['1:r1', '2:after', '4:l4'], 'nothing of the batch committed');
    assert.deepEqual(await progress(), ['0/1008']);
    assert.equal(writer.durableLsn, lsn(0x1008n), 'nothing of the rolled-back batch is durable');
    assert.deepEqual(await texts(p.dst, `SELECT key->>'id' AS r FROM pgtide.conflict_log WHERE subscription = 'r_writer' ORDER BY 1`), ['2'], 'only the conflict resolved in place is logged');
  });

  it('kill -9 during replays of batches whose early runs conflict: each conflict is resolved and logged exactly once', async () => {
    const p = await databasePair(scope, pair, 'r_kill_replay');
    await ddlBoth(p, `CREATE TABLE k (id int PRIMARY KEY, v text, n int)`);
    await p.src.unsafe(`INSERT INTO k VALUES (0, 'hot', 0)`);
    const file = kConfig(scope, p, 'r_kill_replay', { batchMaxTransactions: 8, batchMaxAgeMs: 50 });
    await slotOnly(scope, file);

    // Each source transaction: a conflicting insert, then two updates of the hot row (runs of their own).
    const N = 120;
    await p.dst.unsafe(`INSERT INTO k SELECT g, 'local', -1 FROM generate_series(1, ${N}) g`);
    for (let i = 1; i <= N; i++) await p.src.unsafe(`INSERT INTO k VALUES (${i}, 'remote', 0); UPDATE k SET n = n + 1 WHERE id = 0; UPDATE k SET n = n + 1 WHERE id = 0`);
    const run = { dst: p.dst, file, subscription: 'r_kill_replay', total: N };
    const logged = (): Promise<number> => loggedConflicts(run);

    const killedInReplay: number[] = [];
    for (let round = 0; round < 5; round++) {
      if ((await logged()) >= N) break;
      const cli = startCli(scope, ['start', '--config', file]);
      // Killed while a replay is under way: right after it is announced, or a little later.
      await cli.waitForStderr(/the optimistic probe of \\"public\\"\.\\"k\\" found/, 60_000).catch(() => {});
      await sleep(round * 60);
      cli.kill('SIGKILL');
      await cli.exited;
      if (/the optimistic probe of/.test(cli.stderr())) killedInReplay.push(await logged());
    }
    assert.ok(killedInReplay.some((n) => n < N), `at least one process was killed after a replay began, before every conflict was logged (logged at those kills: ${killedInReplay.join(', ')})`);
    await finishLoggedOnce(scope, run, (cli) => waitForCatchUp(p, { cli, timeoutMs: 120_000 }));
    assert.deepEqual(await texts(p.dst, `SELECT v || ':' || count(*) AS r FROM k WHERE id > 0 GROUP BY v ORDER BY v`), [`local+remote:${N / 2}`, `remote:${N / 2}`],
      'each merge applied once (a second would read local+remote+remote)');
    assert.deepEqual(await texts(p.dst, `SELECT n::text AS r FROM k WHERE id = 0`), [String(2 * N)], 'every update of the hot row applied once');
  });

  it('kill -9 while batches with resolved conflicts commit: each conflict is resolved and logged exactly once', async () => {
    const p = await databasePair(scope, pair, 'r_kill');
    await ddlBoth(p, `CREATE TABLE k (id int PRIMARY KEY, v text)`);
    const file = kConfig(scope, p, 'r_kill', { batchMaxTransactions: 1, batchMaxAgeMs: 0 });
    await slotOnly(scope, file);

    const N = 300;
    await p.dst.unsafe(`INSERT INTO k SELECT g, 'local' FROM generate_series(1, ${N}) g`);
    for (let i = 1; i <= N; i++) await p.src.unsafe(`INSERT INTO k VALUES (${i}, 'remote'), (${N + i}, 'remote')`);
    const run = { dst: p.dst, file, subscription: 'r_kill', total: N };
    await killWhileLogging(scope, run);
    await finishLoggedOnce(scope, run, (cli) => waitForCatchUp(p, { cli, timeoutMs: 120_000 }));
    assert.deepEqual(await texts(p.dst, `SELECT resolution || ':' || count(*) AS r FROM pgtide.conflict_log WHERE subscription = 'r_kill' GROUP BY resolution ORDER BY 1`),
      [`custom:apply_remote:${N / 2}`, `custom:merge:${N / 2}`]);
    assert.deepEqual(await texts(p.dst, `SELECT v || ':' || count(*) AS r FROM k GROUP BY v ORDER BY v`), [`local+remote:${N / 2}`, `remote:${N + N / 2}`],
      'each merge applied once (a second would read local+remote+remote)');
  });
});
