/**
 * One leader per subscription: a session-level advisory lock in the target
 * database, held on a connection of its own for the engine's lifetime. A
 * second process with the same config waits (and says so) instead of running
 * a second initial copy or fighting over the slot and origin. Advisory locks
 * are scoped to one database, which is where the subscription's state lives.
 *
 * https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
 */
import type postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromServerError, PgtideError } from '../core/errors.js';

/** Two int4 keys: a constant for pgtide's leader locks, and the subscription name. */
export const LEADER_KEY_SQL = `hashtext('pgtide.leader'), hashtext($1)`;
const RETRY_MS = 2000;

export class LeaderLock {
  readonly #sql: postgres.Sql;
  readonly #subscription: string;
  readonly #connection: { lost: boolean };
  readonly #side: 'target' | 'source';

  private constructor(sql: postgres.Sql, subscription: string, connection: { lost: boolean }, side: 'target' | 'source') {
    this.#sql = sql;
    this.#subscription = subscription;
    this.#connection = connection;
    this.#side = side;
  }

  /**
   * Waits until this process leads the subscription; undefined when `signal` aborted first.
   * `side`: where the lock is taken, the target database, or the source database for a
   * target that is not a database (an NDJSON file: the slot on the source is what two
   * processes would fight over, and the lock is taken before the file is touched).
   */
  static async acquire(url: string, subscription: string, logger: Logger, signal: AbortSignal, side: 'target' | 'source' = 'target'): Promise<LeaderLock | undefined> {
    const connection = { lost: false };
    const sql = openPostgres(url, 'admin', {
      max: 1, idle_timeout: 0, max_lifetime: null, connect_timeout: 15, fetch_types: false, onnotice: () => {},
      connection: { application_name: 'pgtide-leader' },
      // The lock dies with its session; ensure() takes it again before the next attempt.
      onclose: () => { connection.lost = true; },
    });
    try {
      let told = false;
      while (!signal.aborted) {
        if (await tryLock(sql, subscription)) {
          if (told) logger.info({ subscription }, `this process now leads subscription "${subscription}"`);
          return new LeaderLock(sql, subscription, connection, side);
        }
        if (!told) {
          logger.warn({ subscription, holder: await holder(sql, subscription, side) }, `another pgtide process leads subscription "${subscription}" on this ${side} database; waiting until it stops`);
          told = true;
        }
        await sleep(RETRY_MS, undefined, { signal }).catch(() => {});
      }
    } catch (error) {
      await sql.end({ timeout: 1 }).catch(() => {});
      throw fromServerError(error, side);
    }
    await sql.end({ timeout: 1 }).catch(() => {});
    return undefined;
  }

  /** Before each streaming attempt: a lock lost with its connection is taken again, or the attempt fails. */
  async ensure(): Promise<void> {
    if (!this.#connection.lost) return;
    this.#connection.lost = false;
    const ok = await tryLock(this.#sql, this.#subscription).catch((e: unknown) => { this.#connection.lost = true; throw fromServerError(e, this.#side); });
    if (!ok) {
      this.#connection.lost = true;
      throw new PgtideError('SLOT_IN_USE', `the connection holding the leader lock of subscription "${this.#subscription}" was lost, and another pgtide process leads it now. Stop one of them; this one retries.`, { retryable: true });
    }
  }

  async release(): Promise<void> {
    await this.#sql.end({ timeout: 2 }).catch(() => {});
  }
}

/** True when the lock is free now (no other process leads); for commands that must not run beside the engine. */
export async function leaderIsFree(sql: postgres.Sql, subscription: string): Promise<boolean> {
  return sql.begin(async (tx) => {
    const [row] = await tx.unsafe<{ ok: boolean }[]>(`SELECT pg_try_advisory_xact_lock(${LEADER_KEY_SQL}) AS ok`, [subscription]);
    return row?.ok === true;
  });
}

async function tryLock(sql: postgres.Sql, subscription: string): Promise<boolean> {
  const [row] = await sql.unsafe<{ ok: boolean }[]>(`SELECT pg_try_advisory_lock(${LEADER_KEY_SQL}) AS ok`, [subscription]);
  return row?.ok === true;
}

async function holder(sql: postgres.Sql, subscription: string, side: 'target' | 'source'): Promise<string> {
  // pg_locks shows an int4 key as an oid: reduce it modulo 2^32 to compare.
  const [row] = await sql.unsafe<{ pid: number; app: string | null; addr: string | null; since: string | null }[]>(
    `SELECT a.pid, a.application_name AS app, host(a.client_addr) AS addr, a.backend_start::text AS since
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid::bigint = (hashtext('pgtide.leader')::bigint + 4294967296) % 4294967296
        AND l.objid::bigint = (hashtext($1)::bigint + 4294967296) % 4294967296`, [subscription]).catch(() => []);
  return row ? `${side} backend pid ${row.pid}${row.addr ? ` from ${row.addr}` : ''}, connected since ${row.since ?? '?'}` : 'unknown';
}
