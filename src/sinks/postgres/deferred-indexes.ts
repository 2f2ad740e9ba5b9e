/**
 * Indexes the source built with CREATE INDEX CONCURRENTLY are built the same
 * way on the target, on a side connection, after the apply batch that
 * recorded them (pgtide.ddl_deferred) committed: built inside the batch, a
 * plain CREATE INDEX would hold off every write to the table (and with it the
 * whole stream) for the length of the build, which is what the source's user
 * avoided.
 *
 * Idempotent across a crash: a row stays until its index is built; a build
 * that was interrupted leaves an INVALID index, which is dropped
 * (CONCURRENTLY) before the next try, so no invalid index stays behind. An
 * index that a later change dropped again (no longer in the table's stored
 * snapshot) is not built.
 * https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { openPostgres } from '../../pg/connect.js';
import { fromServerError } from '../../core/errors.js';
import { parseLsn, ZERO_LSN, type Lsn } from '../../core/lsn.js';
import { CLEANUP_MS, settleWithin } from '../../pg/bounded.js';

export interface DeferredIndexOptions {
  readonly url: string;
  readonly subscription: string;
  /** The apply writer's durable position: a row is built once its batch committed. */
  readonly durableLsn: () => Lsn;
  readonly logger: Logger;
}

const POLL_MS = 100;

interface DeferredRow { readonly seq: string; readonly qualified_name: string; readonly statement: string; readonly commit_lsn: string; readonly wanted: boolean }

export class DeferredIndexBuilder {
  readonly #options: DeferredIndexOptions;
  #sql: postgres.Sql | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;
  /** The batch that recorded the latest row must commit before the row is visible. */
  #after: Lsn = ZERO_LSN;

  constructor(options: DeferredIndexOptions) {
    this.#options = options;
  }

  /**
   * Builds what is recorded: at the start of an attempt (what a crash left), and after each
   * change that deferred a build, once the batch holding it (commit LSN `after`) committed.
   */
  kick(after: Lsn = ZERO_LSN): void {
    if (this.#closed) return;
    if (after > this.#after) this.#after = after;
    if (this.#running) { this.#again = true; return; }
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#closed) { this.#again = false; this.kick(); }
    });
  }

  /** Ends the side connection; a build under way is cancelled and redone by the next attempt. */
  async close(): Promise<void> {
    this.#closed = true;
    const sql = this.#sql;
    this.#sql = undefined;
    if (sql) await settleWithin(sql.end({ timeout: 1 }), CLEANUP_MS);
    if (this.#running) await settleWithin(this.#running, CLEANUP_MS);
  }

  async #run(): Promise<void> {
    try {
      while (this.#options.durableLsn() <= this.#after && !this.#closed) await new Promise((r) => setTimeout(r, POLL_MS));
      for (;;) {
        const rows = await this.#connection().unsafe<DeferredRow[]>(
          `SELECT d.seq::text AS seq, d.qualified_name, d.statement, d.commit_lsn::text AS commit_lsn,
                  coalesce((SELECT s.snapshot->'indexes' @> jsonb_build_array(jsonb_build_object('name', d.index_name))
                              FROM pgtide.ddl_snapshot s WHERE s.subscription = d.subscription AND s.table_oid = d.table_oid), false) AS wanted
             FROM pgtide.ddl_deferred d WHERE d.subscription = $1 ORDER BY d.seq`, [this.#options.subscription]);
        if (rows.length === 0 || this.#closed) return;
        for (const row of rows) {
          if (this.#closed) return;
          // Recorded in a batch that has not committed yet: wait for it.
          while (this.#options.durableLsn() <= parseLsn(row.commit_lsn) && !this.#closed) await new Promise((r) => setTimeout(r, POLL_MS));
          if (this.#closed) return;
          if (row.wanted) await this.#build(row);
          await this.#connection().unsafe(`DELETE FROM pgtide.ddl_deferred WHERE subscription = $1 AND seq = $2::text::bigint`, [this.#options.subscription, row.seq]);
        }
      }
    } catch (error) {
      if (this.#closed) return;
      const mapped = fromServerError(error, 'target');
      this.#options.logger.error({ code: mapped.code, sqlState: mapped.sqlState }, `building an index CONCURRENTLY on the target failed: ${mapped.message}; it is tried again at the next start (pgtide.ddl_deferred)`);
    }
  }

  async #build(row: DeferredRow): Promise<void> {
    const sql = this.#connection();
    // A build that was interrupted leaves an invalid index under the name: drop it first.
    const [invalid] = await sql.unsafe<{ invalid: boolean }[]>(
      `SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass($1) AND NOT i.indisvalid) AS invalid`, [row.qualified_name]);
    if (invalid?.invalid) await sql.unsafe(`DROP INDEX CONCURRENTLY IF EXISTS ${row.qualified_name}`);
    const started = Date.now();
    await sql.unsafe(row.statement);
    this.#options.logger.info({ index: row.qualified_name, ms: Date.now() - started }, 'built an index CONCURRENTLY on the target, as the source did');
  }

  #connection(): postgres.Sql {
    // Replica role: a DDL capture installed on the target (two-way replication) must not capture it.
    this.#sql ??= openPostgres(this.#options.url, 'admin', {
      max: 1, connect_timeout: 15, onnotice: () => {}, idle_timeout: 30,
      connection: { application_name: 'pgtide-index', session_replication_role: 'replica', statement_timeout: 0 },
    });
    return this.#sql;
  }
}
