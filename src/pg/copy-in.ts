/**
 * `COPY … FROM STDIN` over postgres.js, for the initial copy and for the apply
 * writer's long insert runs.
 */
import type postgres from 'postgres';
import type { Writable } from 'node:stream';
import { deferred } from '../core/async.js';

/** What COPY needs from a connection: a plain client and a transaction both qualify. */
export type Queryable = Pick<postgres.Sql, 'unsafe'>;

/** The settle functions postgres.js keeps on its Query object and calls from the connection. */
interface QuerySettlers {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export interface CopySink {
  readonly stream: Writable;
  /** The server's row count from the COPY command tag; rejects with the server's error. */
  readonly completion: Promise<number>;
}

/**
 * `COPY … FROM STDIN`. postgres.js settles the writable only on success: when
 * the server rejects a row after the stream was ended (the usual case for a
 * bad last row), the writable's final callback is never called, the pipeline
 * hangs and the transaction is never rolled back (porsager/postgres#1173).
 * The server's answer still reaches the Query's resolve/reject a second time
 * (the first one delivered the stream), so we take it from there: that is also
 * the only place the row count of the command tag is available.
 */
export async function copyIn(sql: Queryable, statement: string): Promise<CopySink> {
  const query = sql.unsafe(statement);
  const settlers = query as unknown as QuerySettlers;
  const first = { resolve: settlers.resolve, reject: settlers.reject };
  const outcome = deferred<number>();
  // Observed by the caller later; if the caller gave up first, nothing is left unhandled.
  outcome.promise.catch(() => {});
  let delivered = false;
  settlers.resolve = (value: unknown) => {
    if (delivered) {
      const count = (value as { count?: unknown } | null)?.count;
      outcome.resolve(typeof count === 'number' ? count : Number.NaN);
      return;
    }
    delivered = true;
    first.resolve(value);
  };
  settlers.reject = (error: unknown) => {
    if (delivered) outcome.reject(error);
    else first.reject(error);
  };
  const stream = await query.writable();
  return { stream, completion: outcome.promise };
}
