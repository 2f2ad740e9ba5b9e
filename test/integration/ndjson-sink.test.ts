/**
 * The NDJSON sink under kill -9: pgtide runs as a CLI child streaming a
 * continuous workload into a file, is killed with SIGKILL several times
 * mid-load and started again, and at the end every transaction the source
 * committed is in the file exactly once, in commit order, and nothing else
 * (rolled-back subtransactions included). Each source transaction inserts
 * one row into tx_log carrying a marker and its own xid, so the file can be
 * counted against the source transaction by transaction. Only a source
 * cluster is started: the target is the file.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultMajor } from '../../src/harness/cluster.js';
import { parseLsn } from '../../src/core/lsn.js';
import {
  TestScope, startCluster, pinnedSql, startCli, writeConfigFile, waitFor, Workload, prng, type CliProcess, type WorkloadStep,
} from '../support/replication.js';

const DDL = `
  CREATE SEQUENCE tx_marker;
  CREATE TABLE tx_log (marker bigint PRIMARY KEY, xid bigint NOT NULL);
  CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL, note text);
  CREATE TABLE docs (id int PRIMARY KEY, n int NOT NULL, body text);
  CREATE TABLE not_published (id int);
`;

interface Line {
  readonly xid: number;
  readonly commit_lsn: string;
  readonly end_lsn: string;
  readonly changes: readonly { readonly kind: string; readonly table?: string; readonly new?: Record<string, unknown> }[];
}

/** Each transaction: its tx_log row (marker, own xid), some churn on items, now and then a rolled-back subtransaction, a TOAST update or a large (streamed) insert. */
const step: WorkloadStep = async (tx, i, rnd) => {
  await tx.unsafe(`INSERT INTO tx_log SELECT nextval('tx_marker'), txid_current()`);
  await tx.unsafe(`INSERT INTO items VALUES ($1::bigint, 0, 'i') ON CONFLICT (id) DO UPDATE SET n = items.n + 1`, [Math.floor(rnd() * 200)]);
  if (i % 4 === 0) await tx.unsafe(`DELETE FROM items WHERE id = $1::bigint`, [Math.floor(rnd() * 200)]);
  if (i % 5 === 0) {
    await tx.unsafe(`SAVEPOINT s`);
    await tx.unsafe(`INSERT INTO tx_log VALUES (-1000000 - $1::bigint, 0)`, [i]);
    await tx.unsafe(`ROLLBACK TO SAVEPOINT s`);
  }
  if (i % 7 === 0) await tx.unsafe(`UPDATE docs SET n = n + 1 WHERE id = 1`);
  if (i % 60 === 59) await tx.unsafe(`INSERT INTO items SELECT 100000 + $1::bigint * 10000 + g, g, md5(g::text) FROM generate_series(1, 3000) g`, [i]);
  await tx.unsafe(`INSERT INTO not_published VALUES (1)`);
};

describe('NDJSON sink: exactly once per transaction across kill -9', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let src: ReturnType<typeof pinnedSql>;
  let sourceUrl: string;
  let configFile: string;
  let outFile: string;
  const children: CliProcess[] = [];
  const start = (): CliProcess => {
    const child = startCli(scope, ['start', '--config', configFile]);
    children.push(child);
    return child;
  };
  const log = (): string => children.map((c, i) => `pgtide #${i + 1} (exit ${c.exitCode ?? 'running'}):\n${c.stderrTail(12)}`).join('\n');
  const readText = (): string => (existsSync(outFile) ? readFileSync(outFile, 'utf8') : '');
  const readLines = (): Line[] => readText().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);

  before(async () => {
    const cluster = await startCluster(scope, { major: defaultMajor(), name: 'ndjson-src' });
    src = pinnedSql(scope, cluster);
    sourceUrl = cluster.url;
    await src.unsafe(DDL);
    await src.unsafe(`INSERT INTO docs SELECT 1, 0, string_agg(md5(random()::text), '') FROM generate_series(1, 400)`);
    const dir = scope.tempDir('pgtide-ndjson-');
    outFile = path.join(dir, 'changes.ndjson');
    configFile = writeConfigFile(scope, {
      name: 'nd',
      source: { url: cluster.url },
      target: { kind: 'ndjson', path: outFile },
      tables: ['public.tx_log', 'public.items', 'public.docs'],
      apply: { batchMaxAgeMs: 10 },
      statusIntervalMs: 500,
      receiveTimeoutMs: 10_000,
    });
  });

  after(() => scope.cleanup());

  it('streams a workload, survives SIGKILL mid-load, and holds every source transaction once, in commit order', async () => {
    let cli = start();
    await cli.waitForStderr(/streaming started/, 60_000);
    const load = new Workload(src, step, { seed: 12, concurrency: 2, pauseMs: 3 }).start();
    const rnd = prng(20261206);
    const schedule: string[] = [];
    try {
      for (let round = 0; round < 4; round++) {
        const wait = Math.round(700 + rnd() * 1500);
        await sleep(wait);
        assert.equal(cli.exitCode, undefined, `pgtide died on its own before kill ${round + 1}:\n${log()}`);
        const linesBefore = readText().split('\n').length - 1;
        cli.kill('SIGKILL');
        await cli.exited;
        schedule.push(`kill ${round + 1} after ${wait} ms (${linesBefore} lines)`);
        await sleep(Math.round(rnd() * 500));
        // The last kill also leaves a torn line, as a kill in the middle of a write does: the restart cuts it off.
        if (round === 3) appendFileSync(outFile, '{"xid":1,"commit_lsn":"0/1","commit_time":"2026-');
        cli = start();
        await cli.waitForStderr(/streaming started/, 60_000);
        if (round === 3) assert.match(cli.stderr(), /cut off a torn last line/);
      }
      await sleep(1000);
    } finally {
      await load.stop();
    }
    assert.ok(load.committed > 200, `the workload committed transactions (${load.committed}; last error: ${String(load.lastError)})`);
    const [last] = await src.unsafe<{ marker: string }[]>(`INSERT INTO tx_log SELECT nextval('tx_marker'), txid_current() RETURNING marker::text`);
    await waitFor('the last transaction in the file', () => (readText().includes(`"table":"tx_log","key":{"marker":"${last!.marker}"}`) ? true : undefined),
      { timeoutMs: 60_000, failFast: () => (cli.exitCode !== undefined ? new Error(`pgtide exited:\n${log()}`) : undefined) })
      .catch((e: Error) => { throw new Error(`${e.message}\nschedule: ${schedule.join(', ')}\n${log()}`); });
    cli.kill('SIGTERM');
    const exit = await cli.exited;
    assert.equal(exit.code, 0, `a clean stop after SIGTERM:\n${log()}`);

    const lines = readLines();
    const source = await src.unsafe<{ marker: string; xid: string }[]>(`SELECT marker::text, xid::text FROM tx_log ORDER BY marker`);
    // Every line's tx_log inserts, with the xid the line says it has.
    const seen = new Map<string, number>();
    for (const line of lines) {
      for (const change of line.changes) {
        if (change.table !== 'tx_log') continue;
        assert.equal(change.kind, 'insert');
        const marker = String(change.new!.marker);
        assert.ok(!marker.startsWith('-'), `a rolled-back subtransaction's row is not in the file (line of xid ${line.xid})`);
        assert.equal(String(change.new!.xid), String(line.xid), 'the line carries its source transaction\'s xid');
        seen.set(marker, (seen.get(marker) ?? 0) + 1);
      }
    }
    const twice = [...seen].filter(([, n]) => n > 1).map(([m]) => m);
    const missing = source.filter((r) => !seen.has(r.marker)).map((r) => r.marker);
    const extra = [...seen.keys()].filter((m) => !source.some((r) => r.marker === m));
    assert.deepEqual({ twice, missing: missing.slice(0, 20), extra }, { twice: [], missing: [], extra: [] }, `schedule: ${schedule.join(', ')}\n${log()}`);
    assert.equal(seen.size, source.length, 'one tx_log row per source transaction, each in the file once');
    // Commit order: strictly increasing commit LSNs, and each line ends after it commits.
    for (let i = 1; i < lines.length; i++) {
      assert.ok(parseLsn(lines[i]!.commit_lsn) > parseLsn(lines[i - 1]!.commit_lsn), `line ${i + 1} commits after line ${i}`);
    }
    assert.ok(lines.every((l) => l.changes.every((c) => c.table !== 'not_published')), 'only published tables');
    assert.ok(lines.some((l) => l.changes.some((c) => c.table === 'docs' && (c.new?.body as { toast?: string } | undefined)?.toast === 'unchanged')), 'an unchanged TOAST value is marked');
    assert.ok(lines.some((l) => l.changes.length > 3000), 'large (streamed) transactions are in the file too');
    // The slot is confirmed only up to what the file holds (the state file's position).
    const [slot] = await src.unsafe<{ confirmed: string }[]>(`SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = 'nd_slot'`);
    const state = JSON.parse(readFileSync(`${outFile}.state.json`, 'utf8')) as { endLsn: string; ackedLsn: string | null };
    const held = [state.endLsn, state.ackedLsn ?? '0/0'].map(parseLsn).reduce((a, b) => (a > b ? a : b));
    assert.ok(parseLsn(slot!.confirmed) <= held, `slot confirmed ${slot!.confirmed} <= held ${state.endLsn}/${state.ackedLsn}`);
  });

  it('refuses what an NDJSON target cannot do; status reads the state file; drop removes the slot and the state file but keeps the output', async () => {
    const seq = await startCliAndWait(['sequences', 'sync', '--config', configFile]);
    assert.equal(seq.code, 1);
    assert.match(seq.stderr, /error \[UNSUPPORTED_FOR_TARGET\]: sequence sync needs a PostgreSQL target/);
    await waitFor('the slot to be inactive', async () => {
      const rows = await src.unsafe<{ active: boolean }[]>(`SELECT active FROM pg_replication_slots WHERE slot_name = 'nd_slot'`);
      return rows[0]?.active === false ? true : undefined;
    }, { timeoutMs: 10_000 });
    const status = await startCliAndWait(['status', '--config', configFile, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout) as { appliedLsn: string; lagBytes: number; slot: { name: string; active: boolean } };
    const state = JSON.parse(readFileSync(`${outFile}.state.json`, 'utf8')) as { endLsn: string };
    assert.equal(report.appliedLsn, parseLsn(state.endLsn).toString(), 'status shows the position the state file holds');
    assert.deepEqual([report.slot.name, report.slot.active], ['nd_slot', false]);
    assert.equal(typeof report.lagBytes, 'number');
    const drop = await startCliAndWait(['drop', '--config', configFile]);
    assert.equal(drop.code, 0, drop.stderr);
    assert.match(drop.stdout, /slot dropped: yes/);
    assert.match(drop.stdout, /state removed: yes/);
    assert.equal(existsSync(`${outFile}.state.json`), false);
    assert.ok(readLines().length > 0, 'the output file stays');
    const slots = await src.unsafe(`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'nd_slot'`);
    assert.equal(slots.length, 0);
  });

  it('writes to standard output with `path: -`: only JSON lines there, logs on stderr, messages included', async () => {
    const dir = scope.tempDir('pgtide-ndjson-stdout-');
    const file = writeConfigFile(scope, {
      name: 'nd_out',
      source: { url: sourceUrl },
      target: { kind: 'ndjson', path: '-', statePath: path.join(dir, 'state.json') },
      tables: ['public.items'],
      apply: { batchMaxAgeMs: 10 },
      statusIntervalMs: 500,
    });
    const child = startCli(scope, ['start', '--config', file]);
    await child.waitForStderr(/streaming started/, 60_000);
    for (let i = 1; i <= 3; i++) {
      await src.begin(async (tx) => {
        await tx.unsafe(`INSERT INTO items VALUES ($1::bigint, $1::int, 'stdout ' || $1::int)`, [900_000_000 + i]);
        await tx.unsafe(`SELECT pg_logical_emit_message(true, 'app.event', 'hello ' || $1::int)`, [i]);
      });
    }
    await waitFor('three lines on stdout', () => (child.stdout().split('\n').filter((l) => l.includes('"note":"stdout ')).length === 3 ? true : undefined),
      { timeoutMs: 30_000, failFast: () => (child.exitCode !== undefined ? new Error(`pgtide exited:\n${child.stderrTail()}`) : undefined) });
    child.kill('SIGTERM');
    assert.equal((await child.exited).code, 0, child.stderrTail());
    const out = child.stdout().split('\n').filter((l) => l !== '');
    const parsed = out.map((l) => JSON.parse(l) as Line);
    assert.equal(parsed.length, 3, `only the three transactions on stdout:\n${child.stdout()}`);
    assert.deepEqual(parsed.map((l) => l.changes.map((c) => c.kind)), [['insert', 'message'], ['insert', 'message'], ['insert', 'message']]);
    assert.match(out[0]!, /"content":\{"base64":"aGVsbG8gMQ=="\}/, 'the message content, base64 of "hello 1"');
    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { endLsn: string };
    assert.equal(state.endLsn, parsed[2]!.end_lsn, 'the position is the last line written');
    await startCliAndWait(['drop', '--config', file]);
  });

  async function startCliAndWait(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = startCli(scope, args);
    const { code } = await child.exited;
    return { code, stdout: child.stdout(), stderr: child.stderr() };
  }
});
