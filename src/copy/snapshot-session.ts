import type postgres from 'postgres';
import type { Queryable } from '../pg/copy-in.js';
import { deferred, type Deferred } from '../core/async.js';

/** One worker's source transaction, holding the imported snapshot until close(). */
export class SourceSession {
  readonly sql: postgres.Sql;
  readonly #tx: postgres.TransactionSql;
  readonly #release: Deferred<void>;
  readonly #finished: Promise<unknown>;

  private constructor(sql: postgres.Sql, tx: postgres.TransactionSql, release: Deferred<void>, finished: Promise<unknown>) {
    this.sql = sql;
    this.#tx = tx;
    this.#release = release;
    this.#finished = finished;
  }

  /** Resolves once the snapshot is imported; the transaction stays open until close(). */
  static async open(sql: postgres.Sql, snapshotName: string): Promise<SourceSession> {
    const ready = deferred<postgres.TransactionSql>();
    const release = deferred<void>();
    const finished = sql.begin('isolation level repeatable read read only', async (tx) => {
      // Must be the transaction's first statement.
      await tx.unsafe(`SET TRANSACTION SNAPSHOT '${snapshotName.replace(/'/g, "''")}'`);
      ready.resolve(tx);
      await release.promise;
    });
    finished.catch((error: unknown) => ready.reject(error));
    const tx = await ready.promise;
    return new SourceSession(sql, tx, release, finished);
  }

  get tx(): Queryable {
    return this.#tx;
  }

  /** Ends the (read-only) transaction; its snapshot is released. */
  async close(): Promise<void> {
    this.#release.resolve();
    await this.#finished;
  }
}
