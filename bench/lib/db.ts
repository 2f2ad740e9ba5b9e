/**
 * Cluster and SQL helpers shared by the scenarios.
 */
import { performance } from 'node:perf_hooks';
import postgres from 'postgres';
import { Cluster, type PgMajor } from '../../src/harness/cluster.js';
import { parseLsn, ZERO_LSN, type Lsn } from '../../src/core/lsn.js';
import type { Cleanup } from './cleanup.js';

/** A table as schema + name; benchmark tables are simple lower-case names. */
export interface Table {
  readonly schema: string;
  readonly name: string;
}

export function table(schema: string, name: string): Table {
  return { schema, name };
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualified(t: Table): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

/** The `schema.table` form that pgtide's config accepts. */
export function dotted(t: Table): string {
  return `${t.schema}.${t.name}`;
}

/**
 * Server settings for every benchmark cluster, on top of the harness defaults
 * (fsync off, synchronous_commit off, 128MB shared_buffers).
 */
export function benchSettings(major: PgMajor, role: 'source' | 'target'): Record<string, string | number> {
  const settings: Record<string, string | number> = {
    // A walsender only sends WAL that is flushed. With the harness's
    // synchronous_commit = off, a source commit would sit in WAL buffers for
    // up to wal_writer_delay (200 ms) before any replicator could see it,
    // which would dominate every latency figure. On the source we use the
    // PostgreSQL default (on; fsync stays off, so this is a write(), not an
    // fsync). Targets keep off, as built-in apply workers use by default.
    synchronous_commit: role === 'source' ? 'on' : 'off',
    // The harness uses 64kB to force streaming in tests; benchmarks use the
    // PostgreSQL default so that only genuinely large transactions stream.
    logical_decoding_work_mem: '64MB',
    shared_buffers: '256MB',
    // No checkpoint in the middle of a measurement: their timing would be noise.
    max_wal_size: '16GB',
    checkpoint_timeout: '1h',
    // Autovacuum kicking in after a 1M-row statement lands on one side's
    // measurement and not the other's; scenarios VACUUM explicitly instead.
    autovacuum: 'off',
    // A multi-second apply of one huge transaction must not look like a dead peer.
    wal_sender_timeout: '5min',
    wal_receiver_timeout: '5min',
    // Same copy parallelism as pgtide's copy.parallelism (2).
    max_sync_workers_per_subscription: 2,
  };
  // Parallel apply of streamed transactions exists from 16 on; an unknown
  // -c setting would stop older servers from starting.
  if (major >= 16) settings.max_parallel_apply_workers_per_subscription = 2;
  return settings;
}

export async function startBenchCluster(major: PgMajor, name: string, role: 'source' | 'target', cleanup: Cleanup): Promise<Cluster> {
  const cluster = await Cluster.start({ major, name, settings: benchSettings(major, role) });
  cleanup.add(`destroy cluster ${name}`, () => cluster.destroy());
  return cluster;
}

/** A client for one database, ended by the clean-up stack before its cluster is destroyed. */
export function connect(cluster: Cluster, database: string, cleanup: Cleanup, max = 4): postgres.Sql {
  const sql = cluster.sql(database, { max, connection: { application_name: 'pgtide-bench' } });
  cleanup.add(`end client ${cluster.name}/${database}`, () => sql.end({ timeout: 5 }));
  return sql;
}

export async function currentLsn(sql: postgres.Sql): Promise<Lsn> {
  const [row] = await sql<{ lsn: string }[]>`SELECT pg_current_wal_lsn()::text AS lsn`;
  return parseLsn(row!.lsn);
}

export function parseNullableLsn(text: string | null | undefined): Lsn {
  return text ? parseLsn(text) : ZERO_LSN;
}

/** One-row table replicated with every scenario's tables; see barrier(). */
export const MARKER_TABLE = table('public', 'bench_marker');

export async function createMarker(sql: postgres.Sql, withRow: boolean): Promise<void> {
  await sql.unsafe(`CREATE TABLE ${qualified(MARKER_TABLE)} (id int PRIMARY KEY, n bigint NOT NULL)`);
  if (withRow) await sql.unsafe(`INSERT INTO ${qualified(MARKER_TABLE)} VALUES (1, 0)`);
}

/**
 * Runs `work` in one source transaction and returns the WAL insert position
 * taken just before COMMIT. The commit record is written after it, so once the
 * target's applied position (the end LSN of the last applied remote commit) is
 * >= this value, this transaction is applied. Comparing with
 * pg_current_wal_lsn() after the commit instead would wait forever whenever
 * the server writes non-transactional WAL afterwards (running-xacts records,
 * hint bits), which no applied position ever covers.
 */
export async function inSourceTransaction(sql: postgres.Sql, work: (tx: postgres.TransactionSql) => Promise<unknown>): Promise<Lsn> {
  return sql.begin(async (tx) => {
    await work(tx);
    const [row] = await tx<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`;
    return parseLsn(row!.lsn);
  });
}

/**
 * A replicated marker transaction committed after everything before it: the
 * "caught up" point for workloads made of many transactions.
 */
export async function barrier(sql: postgres.Sql): Promise<Lsn> {
  return inSourceTransaction(sql, (tx) => tx.unsafe(`UPDATE ${qualified(MARKER_TABLE)} SET n = n + 1 WHERE id = 1`));
}

/** Heap + TOAST bytes (no indexes) of the tables: the data an initial copy moves. */
export async function tableBytes(sql: postgres.Sql, tables: readonly Table[]): Promise<number> {
  let total = 0;
  for (const t of tables) {
    const [row] = await sql.unsafe<{ bytes: string }[]>(`SELECT pg_table_size('${qualified(t).replace(/'/g, "''")}')::text AS bytes`);
    total += Number(row!.bytes);
  }
  return total;
}

export async function rowCount(sql: postgres.Sql, t: Table): Promise<number> {
  const [row] = await sql.unsafe<{ n: string }[]>(`SELECT count(*)::text AS n FROM ${qualified(t)}`);
  return Number(row!.n);
}

export interface WaitOptions {
  readonly what: string;
  readonly timeoutMs: number;
  readonly pollMs: number;
  /** Throws when the thing being waited for can no longer happen (a dead child, an apply error). */
  readonly health?: () => Promise<void>;
}

/** Polls until `done` holds and returns performance.now() at that moment. */
export async function waitUntil(done: () => Promise<boolean>, options: WaitOptions): Promise<number> {
  const deadline = performance.now() + options.timeoutMs;
  let polls = 0;
  for (;;) {
    if (await done()) return performance.now();
    // Health checks cost a query; every 20th poll is often enough to fail fast.
    if (options.health && polls++ % 20 === 0) await options.health();
    if (performance.now() > deadline) throw new Error(`timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for ${options.what}`);
    await sleep(options.pollMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function seconds(startMs: number, endMs: number): number {
  return (endMs - startMs) / 1000;
}

/** Waits until no walsender holds the slot (it exits a moment after its client goes away). */
export async function waitSlotInactive(sql: postgres.Sql, slot: string, timeoutMs = 15_000): Promise<void> {
  await waitUntil(async () => {
    const rows = await sql<{ active: boolean }[]>`SELECT active FROM pg_replication_slots WHERE slot_name = ${slot}`;
    return rows.length === 0 || !rows[0]!.active;
  }, { what: `replication slot ${slot} to become inactive`, timeoutMs, pollMs: 50 });
}

/** Drops the slot if it exists, waiting for its walsender to let go first. */
export async function dropSlotIfExists(sql: postgres.Sql, slot: string): Promise<void> {
  await waitSlotInactive(sql, slot);
  await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${slot}`;
}

export async function slotWalsenderPids(sql: postgres.Sql, slot: string): Promise<number[]> {
  const rows = await sql<{ pid: number }[]>`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = ${slot} AND active_pid IS NOT NULL`;
  return rows.map((r) => r.pid);
}
