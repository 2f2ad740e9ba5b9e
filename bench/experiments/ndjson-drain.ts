/**
 * How fast does the NDJSON sink drain a backlog? N one-row transactions are
 * committed on the source while pgtide is stopped (its slot exists), then the
 * CLI is started and timed until the file holds N lines (process start,
 * checks and START_REPLICATION included). Each batch of up to
 * `apply.batchMaxTransactions` lines costs one fsync of the file and one of
 * the state file.
 *
 *   node dist/bench/experiments/ndjson-drain.js [transactions]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, defaultMajor } from '../../src/harness/cluster.js';

const transactions = Number(process.argv[2] ?? 100_000);
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

async function main(): Promise<void> {
  const cluster = await Cluster.start({ major: defaultMajor(), name: 'ndjson-drain' });
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-ndjson-drain-'));
  const out = path.join(dir, 'out.ndjson');
  const config = path.join(dir, 'pgtide.yaml');
  writeFileSync(config, `name: drain\nsource: { url: "${cluster.url}" }\ntarget: { kind: ndjson, path: "${out}" }\ntables: [public.t]\nstatusIntervalMs: 1000\n`);
  const sql = cluster.sql('postgres', { max: 1 });
  const lines = (): number => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').length - 1 : 0);
  let child: ChildProcess | undefined;
  const start = async (): Promise<ChildProcess> => {
    const started = spawn(process.execPath, [CLI, 'start', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    started.stderr!.on('data', (chunk: Buffer) => { log += chunk.toString(); });
    while (!/streaming started/.test(log)) {
      if (started.exitCode !== null) throw new Error(`pgtide exited: ${log}`);
      await sleep(20);
    }
    return started;
  };
  const stop = async (running: ChildProcess): Promise<void> => {
    running.kill('SIGTERM');
    if (running.exitCode === null) await new Promise((resolve) => running.once('close', resolve));
  };
  try {
    await sql.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text);
      CREATE PROCEDURE load(n int) LANGUAGE plpgsql AS $$ BEGIN FOR i IN 1..n LOOP INSERT INTO t VALUES (i, md5(i::text)); COMMIT; END LOOP; END $$`);
    child = await start(); // creates the slot
    await stop(child);
    await sql.unsafe(`CALL load(${transactions})`);
    const began = performance.now();
    const spawned = spawn(process.execPath, [CLI, 'start', '--config', config], { stdio: ['ignore', 'ignore', 'ignore'] });
    child = spawned;
    while (lines() < transactions) {
      if (spawned.exitCode !== null) throw new Error('pgtide exited before the backlog was drained');
      await sleep(20);
    }
    const seconds = (performance.now() - began) / 1000;
    process.stdout.write(`${transactions} one-row transactions drained into NDJSON in ${seconds.toFixed(2)} s (process start included): ${Math.round(transactions / seconds)} tx/s, ${(readFileSync(out).length / 2 ** 20).toFixed(1)} MiB\n`);
    await stop(spawned);
  } finally {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await sql.end({ timeout: 1 });
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
