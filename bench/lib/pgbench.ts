/**
 * The pgbench schema, its data and its default (TPC-B-like) transaction,
 * written in SQL and Node so the benchmark does not depend on a pgbench binary.
 * Data is generated server-side with generate_series, as `pgbench -i -I G` does.
 */
import { performance } from 'node:perf_hooks';
import postgres from 'postgres';
import { table, qualified, type Table } from './db.js';

export const ACCOUNTS = table('public', 'pgbench_accounts');
export const BRANCHES = table('public', 'pgbench_branches');
export const TELLERS = table('public', 'pgbench_tellers');
export const HISTORY = table('public', 'pgbench_history');
export const PGBENCH_TABLES: readonly Table[] = [ACCOUNTS, BRANCHES, TELLERS, HISTORY];

/**
 * pgbench's DDL (fillfactor 100). `withKeys` adds the primary keys in the
 * CREATE (used on targets, which must have them before rows arrive); sources
 * add them after loading, which is faster. History has no key, as in pgbench.
 */
export function pgbenchDdl(withKeys: boolean): string {
  const pk = (column: string) => (withKeys ? `, PRIMARY KEY (${column})` : '');
  return `
    CREATE TABLE ${qualified(BRANCHES)} (bid int NOT NULL, bbalance int, filler char(88)${pk('bid')}) WITH (fillfactor = 100);
    CREATE TABLE ${qualified(TELLERS)} (tid int NOT NULL, bid int, tbalance int, filler char(84)${pk('tid')}) WITH (fillfactor = 100);
    CREATE TABLE ${qualified(ACCOUNTS)} (aid int NOT NULL, bid int, abalance int, filler char(84)${pk('aid')}) WITH (fillfactor = 100);
    CREATE TABLE ${qualified(HISTORY)} (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
  `;
}

/** Creates and fills the pgbench tables on a source. `historyRows` > 0 pre-fills history (initial-copy wants it non-empty). */
export async function loadPgbench(sql: postgres.Sql, scale: number, historyRows = 0): Promise<void> {
  await sql.unsafe(pgbenchDdl(false));
  await sql.unsafe(`INSERT INTO ${qualified(BRANCHES)} (bid, bbalance) SELECT bid, 0 FROM generate_series(1, ${scale}) AS bid`);
  await sql.unsafe(`INSERT INTO ${qualified(TELLERS)} (tid, bid, tbalance) SELECT tid, (tid - 1) / 10 + 1, 0 FROM generate_series(1, ${10 * scale}) AS tid`);
  await sql.unsafe(`INSERT INTO ${qualified(ACCOUNTS)} (aid, bid, abalance, filler) SELECT aid, (aid - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${100_000 * scale}) AS aid`);
  if (historyRows > 0) {
    await sql.unsafe(`
      INSERT INTO ${qualified(HISTORY)} (tid, bid, aid, delta, mtime)
      SELECT g % ${10 * scale} + 1, g % ${scale} + 1, (g * 7919) % ${100_000 * scale} + 1, g % 10001 - 5000,
             timestamp '2024-01-01' + g * interval '1 second'
      FROM generate_series(1, ${historyRows}) AS g`);
  }
  await sql.unsafe(`
    ALTER TABLE ${qualified(BRANCHES)} ADD PRIMARY KEY (bid);
    ALTER TABLE ${qualified(TELLERS)} ADD PRIMARY KEY (tid);
    ALTER TABLE ${qualified(ACCOUNTS)} ADD PRIMARY KEY (aid);
  `);
  await sql.unsafe(`VACUUM ANALYZE ${PGBENCH_TABLES.map(qualified).join(', ')}`);
}

/** xorshift32: a seeded generator, so a run's workload is reproducible. */
function rng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state / 0x1_0000_0000;
  };
}

export interface WorkloadResult {
  readonly transactions: number;
  readonly seconds: number;
}

/**
 * pgbench's built-in "TPC-B (sort of)" script for `seconds`, one connection
 * per client. Each transaction goes as one simple-protocol message (values
 * inlined; they are integers we generate), so the client is not the bottleneck.
 */
export async function runTpcb(url: string, options: { readonly clients: number; readonly seconds: number; readonly scale: number; readonly seed: number }): Promise<WorkloadResult> {
  const accounts = 100_000 * options.scale;
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  const client = async (index: number): Promise<number> => {
    // max 1: a multi-statement BEGIN ... END must stay on one connection.
    const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'pgtide-bench-tpcb' } });
    const random = rng(options.seed * 7919 + index + 1);
    const pick = (n: number) => Math.floor(random() * n) + 1;
    let done = 0;
    try {
      while (performance.now() < deadline) {
        const aid = pick(accounts);
        const bid = pick(options.scale);
        const tid = pick(10 * options.scale);
        const delta = Math.floor(random() * 10001) - 5000;
        await sql.unsafe(tpcbTransaction(aid, bid, tid, delta));
        done++;
      }
    } finally {
      await sql.end({ timeout: 5 });
    }
    return done;
  };
  const counts = await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return { transactions: counts.reduce((a, b) => a + b, 0), seconds: (performance.now() - started) / 1000 };
}

/** pgbench's built-in TPC-B-like script as one simple-protocol query (BEGIN … END). */
export function tpcbTransaction(aid: number, bid: number, tid: number, delta: number): string {
  return `BEGIN;
          UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid};
          SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};
          UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid};
          UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = ${bid};
          INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, ${bid}, ${aid}, ${delta}, CURRENT_TIMESTAMP);
          END;`;
}
