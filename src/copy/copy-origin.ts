/**
 * The initial copy commits under the edge's replication origin, with the
 * commit time -infinity (docs/conflicts.md, "Time-based policies").
 *
 * Why: a row's last writer and commit time come from its xmin's commit
 * timestamp (`pg_xact_commit_timestamp_origin`). Committed as a plain local
 * transaction, a copied row would look like a local write made when the copy
 * ended, later than the source changes made while the copy ran: under
 * last_update_wins those changes would lose to the older copied row, and
 * every change of this edge would meet an "origin differs" conflict. Under
 * the edge's origin the copied rows are the edge's own, and -infinity makes
 * them older than any change that arrives later from any edge (what the copy
 * holds was committed on the source before the snapshot; what streams was
 * not in it).
 *
 * How: `pg_replication_origin_xact_setup(lsn, timestamp)` sets the commit
 * timestamp PostgreSQL records for the transaction (xact.c uses the origin
 * session's timestamp when one is set). The LSN given is 0/0, which never
 * moves the origin's progress (PostgreSQL only advances it), so the apply
 * position of record (pgtide.apply_progress and the origin kept in step with
 * it) is untouched. Only the commit record carries the origin (the rows'
 * records were written before it was bound): a publisher decoding the copy
 * as it streams a large transaction sees them without one. So a two-way
 * pair's reverse edge must still start after the copy (docs/topologies.md);
 * the origin is for conflict detection.
 *
 * An origin can be bound to one session at a time, and the copy's workers
 * commit in parallel: only the commit is serialized (bound, committed,
 * released), not the COPY before it.
 */
import type postgres from 'postgres';

/** The commit time of copied rows: older than any real commit. */
export const COPY_COMMIT_TIME = '-infinity';

export class CopyOrigin {
  readonly #name: string;
  #turn: Promise<void> = Promise.resolve();

  constructor(name: string) {
    this.#name = name;
  }

  /**
   * Runs `work` in a transaction of `sql` (a one-connection pool) that commits
   * under the origin with COPY_COMMIT_TIME.
   */
  async transaction<T>(sql: postgres.Sql, work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
    let release: (() => void) | undefined;
    let bound = false;
    try {
      return await sql.begin(async (tx): Promise<T> => {
        const result = await work(tx);
        const previous = this.#turn;
        this.#turn = new Promise<void>((resolve) => { release = resolve; });
        await previous;
        // The apply writer creates the origin at its first start, which comes after the first copy.
        await tx.unsafe(`SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`, [this.#name]);
        bound = true;
        await tx.unsafe(`SELECT pg_replication_origin_session_setup($1)`, [this.#name]);
        await tx.unsafe(`SELECT pg_replication_origin_xact_setup('0/0', '${COPY_COMMIT_TIME}')`);
        return result;
      }) as T;
    } finally {
      // After COMMIT or ROLLBACK: the session gives the origin back for the next worker's commit.
      if (bound) await sql.unsafe(`SELECT pg_replication_origin_session_reset()`).catch(() => {});
      release?.();
    }
  }
}
