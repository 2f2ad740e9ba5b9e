/**
 * The "limits": what the machine can do with no replicator in the way. They
 * are references, not strict bounds, and are explained in docs/benchmarks.md.
 *
 * - copyPipe: COPY ... TO STDOUT of the source piped straight into COPY ...
 *   FROM STDIN on the target, tables in parallel: an initial copy with zero
 *   overhead beyond moving the bytes.
 * - peek: pg_logical_slot_peek_binary_changes with pgoutput over a slot, i.e.
 *   the walsender's decoding work without any network or apply.
 */
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import postgres from 'postgres';
import type { PgMajor } from '../../src/harness/cluster.js';
import { qualified, seconds, waitUntil, type Table } from '../lib/db.js';

/**
 * Copies every table (largest first) with `parallelism` concurrent pipes; returns seconds.
 *
 * Each COPY TO STDOUT gets a connection of its own that is thrown away
 * afterwards: postgres.js (3.4) can leave a connection's socket paused when
 * the last CopyData fills the stream's buffer and CopyDone arrives in the same
 * chunk, and the next query on that connection then hangs forever
 * (porsager/postgres#499, fix proposed in #1016). Connecting costs a few ms per table.
 */
export async function copyPipe(sourceUrl: string, target: postgres.Sql, tables: readonly Table[], sizes: ReadonlyMap<Table, number>, parallelism: number, format: 'text' | 'binary'): Promise<number> {
  const options = format === 'binary' ? ' (FORMAT binary)' : '';
  const queue = [...tables].sort((a, b) => (sizes.get(b) ?? 0) - (sizes.get(a) ?? 0));
  const started = performance.now();
  const worker = async (): Promise<void> => {
    for (let t = queue.shift(); t; t = queue.shift()) {
      const source = postgres(sourceUrl, { max: 1, onnotice: () => {} });
      try {
        const readable = await source.unsafe(`COPY ${qualified(t)} TO STDOUT${options}`).readable();
        const writable = await target.unsafe(`COPY ${qualified(t)} FROM STDIN${options}`).writable();
        await pipeline(readable, writable);
      } finally {
        // timeout 0: destroy rather than wait on a socket that may be paused.
        await source.end({ timeout: 0 });
      }
    }
  };
  await Promise.all(Array.from({ length: parallelism }, worker));
  return seconds(started, performance.now());
}

export const LIMIT_SLOT = 'limit_slot';
export const LIMIT_PUBLICATION = 'limit_pub';

export async function createLimitPublication(sql: postgres.Sql, tables: readonly Table[]): Promise<void> {
  await sql.unsafe(`CREATE PUBLICATION ${LIMIT_PUBLICATION} FOR TABLE ${tables.map(qualified).join(', ')}`);
}

export async function createLimitSlot(sql: postgres.Sql): Promise<void> {
  await sql`SELECT pg_create_logical_replication_slot(${LIMIT_SLOT}, 'pgoutput')`;
}

export interface PeekResult {
  /** pgoutput messages produced (BEGIN/RELATION/INSERT/.../COMMIT and stream messages). */
  readonly messages: number;
  readonly seconds: number;
}

/**
 * Decodes everything the slot has not confirmed, through pgoutput, without
 * consuming it. Protocol 4 with streaming is what a PostgreSQL 16+ subscriber
 * asks for; 14 and 15 stream with protocol 2.
 */
export async function peek(sql: postgres.Sql, major: PgMajor, slot = LIMIT_SLOT, publication = LIMIT_PUBLICATION): Promise<PeekResult> {
  const proto = major >= 16 ? '4' : '2';
  // The SQL decoding functions stop at the flushed WAL position; make sure
  // everything written so far is flushed before the clock starts.
  await waitUntil(async () => {
    const [row] = await sql<{ flushed: boolean }[]>`SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn() AS flushed`;
    return row!.flushed;
  }, { what: 'the source WAL to be flushed', timeoutMs: 60_000, pollMs: 20 });
  const started = performance.now();
  const [row] = await sql<{ n: string }[]>`
    SELECT count(*)::text AS n FROM pg_logical_slot_peek_binary_changes(${slot}, NULL, NULL,
      'proto_version', ${proto}, 'publication_names', ${publication}, 'streaming', 'on')`;
  return { messages: Number(row!.n), seconds: seconds(started, performance.now()) };
}
