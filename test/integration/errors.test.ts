/**
 * The CLI's failure modes, as a user meets them: each error exits 1 and prints
 * one `error [CODE]: message` line that names the problem and the fix, with no
 * stack trace and never a password. Then `pgtide status` and `pgtide drop`
 * after a real run.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TestScope, startPair, startCluster, ddlBoth, waitForCatchUp, writeConfigFile, runCli, startCli, cliConfig,
  type Pair, type CliResult,
} from '../support/replication.js';
import { freePort, type Cluster } from '../../src/harness/cluster.js';
import { parseLsn } from '../../src/core/lsn.js';

const WRONG_PASSWORD = 'Wr0ng-S3cret-xyzzy';

describe('CLI errors, status and drop', { timeout: 300_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;
  let replicaOnly: Cluster;

  /** Asserts a clean CLI failure with `code`, and that no secret leaked. */
  function assertCliError(result: CliResult, code: string, secrets: readonly string[] = []): string {
    const output = `${result.stdout}\n${result.stderr}`;
    assert.equal(result.code, 1, `exit code 1 expected; got ${result.code} (signal ${result.signal}); output:\n${output}`);
    const line = result.stderr.split('\n').find((l) => l.startsWith('error ['));
    assert.ok(line, `an "error [CODE]" line on stderr; got:\n${result.stderr}`);
    assert.match(line, new RegExp(`^error \\[${code}\\]`), `error code ${code} expected; got:\n${result.stderr}`);
    assert.doesNotMatch(output, /\n\s{4}at /, 'no stack trace in the output');
    for (const secret of [pair.source.password, ...secrets]) {
      assert.ok(!output.includes(secret), `the output must not contain the password ${JSON.stringify(secret)}:\n${output}`);
    }
    return result.stderr;
  }

  const start = (config: object | string, args: string[] = []) => runCli(scope, ['start', '--config', writeConfigFile(scope, config), ...args], { timeoutMs: 60_000 });

  before(async () => {
    [pair, replicaOnly] = await Promise.all([
      startPair(scope, { name: 'errors' }),
      startCluster(scope, { name: 'errors-replica', walLevel: 'replica' }),
    ]);
    await ddlBoth(pair, `CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await pair.src.unsafe(`CREATE TABLE only_src (id int PRIMARY KEY); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g`);
  });

  after(() => scope.cleanup());

  it('WAL_LEVEL_NOT_LOGICAL when the source has wal_level = replica', async () => {
    const stderr = assertCliError(await start(cliConfig({ sourceUrl: replicaOnly.url, targetUrl: pair.targetUrl }, { name: 'wal' })), 'WAL_LEVEL_NOT_LOGICAL');
    assert.match(stderr, /wal_level = replica/);
    assert.match(stderr, /wal_level = logical/);
  });

  it('PUBLICATION_MISSING when the configured publication does not exist', async () => {
    const stderr = assertCliError(await start(cliConfig(pair, { name: 'pubmissing', publication: 'no_such_pub' })), 'PUBLICATION_MISSING');
    assert.match(stderr, /no_such_pub/);
  });

  it('TABLE_MISSING_ON_TARGET when a published table is not on the target', async () => {
    const stderr = assertCliError(await start(cliConfig(pair, { name: 'tblmissing', tables: ['public.only_src'] })), 'TABLE_MISSING_ON_TARGET');
    assert.match(stderr, /"public"\."only_src"/);
    // The same words as the initial copy's and the writer's: one message per fact.
    assert.match(stderr, /does not exist on the target\. pgtide copies rows, not definitions: create it on the target first with `pgtide schema copy --config <file>`/);
  });

  it('CONNECTION_FAILED when nothing listens on the source port', async () => {
    const port = await freePort();
    const url = `postgres://postgres:${pair.source.password}@127.0.0.1:${port}/postgres`;
    const stderr = assertCliError(await start(cliConfig({ sourceUrl: url, targetUrl: pair.targetUrl }, { name: 'noconn' })), 'CONNECTION_FAILED');
    assert.match(stderr, /source/);
  });

  it('AUTH_FAILED on a wrong source password, without printing it', async () => {
    const url = `postgres://postgres:${WRONG_PASSWORD}@127.0.0.1:${pair.source.port}/postgres`;
    const stderr = assertCliError(await start(cliConfig({ sourceUrl: url, targetUrl: pair.targetUrl }, { name: 'badauth' })), 'AUTH_FAILED', [WRONG_PASSWORD]);
    assert.match(stderr, /source/);
  });

  it('AUTH_FAILED on a wrong target password, without printing it', async () => {
    const url = `postgres://postgres:${WRONG_PASSWORD}@127.0.0.1:${pair.target.port}/postgres`;
    const stderr = assertCliError(await start(cliConfig({ sourceUrl: pair.sourceUrl, targetUrl: url }, { name: 'badauth2' })), 'AUTH_FAILED', [WRONG_PASSWORD]);
    assert.match(stderr, /target/);
  });

  it('CONFIG_INVALID on a file that is not YAML', async () => {
    const stderr = assertCliError(await start(`source: { url: "postgres://postgres:${WRONG_PASSWORD}@127.0.0.1/x"\ntarget: [unclosed\n  - : :\n`), 'CONFIG_INVALID', [WRONG_PASSWORD]);
    assert.match(stderr, /YAML/);
  });

  it('CONFIG_INVALID naming each bad field', async () => {
    const stderr = assertCliError(await start({
      source: { url: 'mysql://localhost/db' },
      target: { url: `postgres://postgres:${WRONG_PASSWORD}@127.0.0.1/x`, extra: true },
      copy: { parallelism: 0 },
      tables: ['bad name!'],
      bogus: 1,
    }), 'CONFIG_INVALID', [WRONG_PASSWORD]);
    for (const field of ['source.url', 'copy.parallelism', 'tables.0', 'bogus', 'extra']) assert.ok(stderr.includes(field), `the message names ${field}:\n${stderr}`);
  });

  it('CONFIG_INVALID naming an unset environment variable', async () => {
    const stderr = assertCliError(await start({ source: { url: 'postgres://postgres:${PGTIDE_TEST_SURELY_UNSET}@127.0.0.1/x' }, target: { url: pair.targetUrl } }), 'CONFIG_INVALID');
    assert.match(stderr, /PGTIDE_TEST_SURELY_UNSET/);
    assert.match(stderr, /source\.url/);
  });

  it('CONFIG_NOT_FOUND when the config file does not exist', async () => {
    for (const command of ['start', 'status', 'drop']) {
      const stderr = assertCliError(await runCli(scope, [command, '--config', '/nonexistent/pgtide-test.yaml']), 'CONFIG_NOT_FOUND');
      assert.match(stderr, /\/nonexistent\/pgtide-test\.yaml/);
    }
  });

  it('status reports the applied position and ready tables after a run; drop removes slot, publication, origin and state', async () => {
    const file = writeConfigFile(scope, cliConfig(pair, { name: 'statusdrop', tables: ['public.items'] }));
    const cli = startCli(scope, ['start', '--config', file]);
    await cli.waitForStderr(/streaming started/, 60_000);
    await pair.src.unsafe(`INSERT INTO items SELECT g, 'streamed' FROM generate_series(101, 150) g; UPDATE items SET v = 'u' WHERE id <= 10`);
    await waitForCatchUp(pair, { cli });

    // drop refuses while the subscription runs.
    assertCliError(await runCli(scope, ['drop', '--config', file]), 'SLOT_IN_USE');

    cli.kill('SIGTERM');
    const exit = await cli.exited;
    assert.equal(exit.code, 0, `SIGTERM ends pgtide with exit code 0; stderr tail:\n${cli.stderrTail()}`);

    // Read once pgtide stopped: idle heartbeats are source transactions applied after the catch-up.
    const [{ lsn }] = await pair.src.unsafe<{ lsn: string }[]>(`SELECT pg_current_wal_lsn()::text AS lsn`) as unknown as [{ lsn: string }];
    const status = await runCli(scope, ['status', '--config', file]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^subscription\s+statusdrop$/m);
    const applied = /^applied LSN\s+([0-9A-F]+\/[0-9A-F]+)$/m.exec(status.stdout);
    assert.ok(applied, `an applied LSN in:\n${status.stdout}`);
    // The marker transaction committed before `lsn` was read, and was applied.
    assert.ok(parseLsn(applied[1]!) > 0n && parseLsn(applied[1]!) <= parseLsn(lsn), `applied ${applied[1]} is a position at or before ${lsn}`);
    assert.match(status.stdout, /^\s+public\.items\s+ready\s/m);
    assert.match(status.stdout, /slot\s+statusdrop_slot \(inactive\)/);
    assert.doesNotMatch(`${status.stdout}${status.stderr}`, new RegExp(pair.source.password));

    const json = await runCli(scope, ['status', '--config', file, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as { subscription: string; appliedLsn: string; tables: { schema: string; name: string; state: string; rowsCopied: number }[] };
    assert.equal(report.subscription, 'statusdrop');
    assert.deepEqual(report.tables.map((t) => `${t.schema}.${t.name}:${t.state}`).sort(), ['public.items:ready', 'public.pgtide_test_marker:ready']);
    assert.equal(report.tables.find((t) => t.name === 'items')?.rowsCopied, 100);

    const drop = await runCli(scope, ['drop', '--config', file]);
    assert.equal(drop.code, 0, drop.stderr);
    assert.match(drop.stdout, /slot dropped: yes/);
    assert.match(drop.stdout, /publication dropped: yes/);
    assert.match(drop.stdout, /origin dropped: yes/);
    assert.match(drop.stdout, /state removed: yes/);
    assert.equal((await pair.src.unsafe(`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'statusdrop_slot'`)).length, 0);
    assert.equal((await pair.src.unsafe(`SELECT 1 FROM pg_publication WHERE pubname = 'statusdrop_pub'`)).length, 0);
    assert.equal((await pair.dst.unsafe(`SELECT 1 FROM pg_replication_origin WHERE roname LIKE 'pgtide_statusdrop%'`)).length, 0);
    assert.equal((await pair.dst.unsafe(`SELECT 1 FROM pgtide.subscription WHERE name = 'statusdrop'`)).length, 0);
    assert.equal((await pair.dst.unsafe(`SELECT 1 FROM pgtide.table_state WHERE subscription = 'statusdrop'`)).length, 0);
    // The replicated data stays on the target.
    assert.deepEqual([...await pair.dst.unsafe(`SELECT count(*)::int AS n FROM items`)], [{ n: 150 }]);

    // A second drop has nothing left to remove; status now says the subscription never ran.
    const again = await runCli(scope, ['drop', '--config', file]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /slot dropped: no/);
    assertCliError(await runCli(scope, ['status', '--config', file]), 'STATE_CORRUPT');
  });
});
