/**
 * Reads and writes pgtide's own state in the target's `pgtide` schema:
 * the subscription, each table's copy state and sync LSN, applied progress.
 */
import type postgres from 'postgres';
import { formatLsn, parseLsn, ZERO_LSN, type Lsn } from '../changes/lsn.js';
import { fromServerError } from '../control/errors.js';
import { tableKey, type TableGateState, type TableSyncState } from '../apply/change-gate.js';
import { migrateStateSchema } from './state-schema.js';
import { textArrayLiteral } from '../apply/statements.js';
import type { Queryable } from './copy-in.js';

export interface SubscriptionRow {
  readonly name: string;
  readonly slotName: string;
  readonly publication: string;
  readonly sourceSystemId: string | null;
  readonly startLsn: Lsn | undefined;
}

export interface TableStateRow {
  readonly schema: string;
  readonly name: string;
  readonly state: TableSyncState;
  readonly syncLsn: Lsn;
  readonly rowsCopied: number;
  /**
   * The table's rows on the target were written by an interrupted copy in ctid ranges
   * (it was empty when that copy began), so the next copy empties it first.
   */
  readonly copyOwnsRows: boolean;
}

export class StateStore {
  readonly #sql: postgres.Sql;
  readonly subscription: string;

  constructor(sql: postgres.Sql, subscription: string) {
    this.#sql = sql;
    this.subscription = subscription;
  }

  async migrate(): Promise<void> {
    try {
      await migrateStateSchema(this.#sql);
    } catch (error) {
      throw fromServerError(error, 'target');
    }
  }

  async getSubscription(): Promise<SubscriptionRow | undefined> {
    const [row] = await this.#sql.unsafe<{ name: string; slot_name: string; publication: string; source_system_id: string | null; start_lsn: string | null }[]>(
      `SELECT name, slot_name, publication, source_system_id, start_lsn::text FROM pgtide.subscription WHERE name = $1`, [this.subscription]);
    if (!row) return undefined;
    return { name: row.name, slotName: row.slot_name, publication: row.publication, sourceSystemId: row.source_system_id, startLsn: row.start_lsn ? parseLsn(row.start_lsn) : undefined };
  }

  async createSubscription(slotName: string, publication: string, sourceSystemId: string): Promise<void> {
    await this.#sql.unsafe(
      `INSERT INTO pgtide.subscription (name, slot_name, publication, source_system_id) VALUES ($1, $2, $3, $4)
       ON CONFLICT (name) DO UPDATE SET slot_name = EXCLUDED.slot_name, publication = EXCLUDED.publication, source_system_id = EXCLUDED.source_system_id`,
      [this.subscription, slotName, publication, sourceSystemId]);
  }

  async setStartLsn(lsn: Lsn | undefined): Promise<void> {
    await this.#sql.unsafe(`UPDATE pgtide.subscription SET start_lsn = $2::pg_lsn WHERE name = $1`, [this.subscription, lsn === undefined ? null : formatLsn(lsn)]);
  }

  /** Registers tables new to the subscription as `init`; forgets tables no longer published. */
  async syncTableList(tables: readonly { readonly schema: string; readonly name: string }[]): Promise<void> {
    await this.#sql.begin(async (tx) => {
      for (const t of tables) {
        await tx.unsafe(`INSERT INTO pgtide.table_state (subscription, schema_name, table_name, state) VALUES ($1, $2, $3, 'init') ON CONFLICT DO NOTHING`, [this.subscription, t.schema, t.name]);
      }
      await tx.unsafe(
        `DELETE FROM pgtide.table_state WHERE subscription = $1
            AND (schema_name, table_name) NOT IN (SELECT s, n FROM unnest($2::text[], $3::text[]) AS k(s, n))`,
        [this.subscription, textArrayLiteral(tables.map((t) => t.schema)), textArrayLiteral(tables.map((t) => t.name))]);
    });
  }

  async tableStates(): Promise<TableStateRow[]> {
    const rows = await this.#sql.unsafe<{ schema_name: string; table_name: string; state: TableSyncState; sync_lsn: string | null; rows_copied: string; copy_owns_rows: boolean }[]>(
      `SELECT schema_name, table_name, state, sync_lsn::text, rows_copied::text, copy_owns_rows FROM pgtide.table_state WHERE subscription = $1 ORDER BY 1, 2`, [this.subscription]);
    return rows.map((r) => ({ schema: r.schema_name, name: r.table_name, state: r.state, syncLsn: r.sync_lsn ? parseLsn(r.sync_lsn) : ZERO_LSN, rowsCopied: Number(r.rows_copied), copyOwnsRows: r.copy_owns_rows }));
  }

  async gateMap(): Promise<Map<string, TableGateState>> {
    const map = new Map<string, TableGateState>();
    for (const row of await this.tableStates()) map.set(tableKey(row.schema, row.name), { state: row.state, syncLsn: row.syncLsn });
    return map;
  }

  /**
   * `on`: the copy's own target transaction, so that `ready` commits with the rows it
   * describes (a retry then never finds copied rows in a table not marked ready).
   */
  async setTableState(schema: string, name: string, state: TableSyncState, syncLsn: Lsn | undefined, rowsCopied?: number, on: Queryable = this.#sql): Promise<void> {
    await on.unsafe(
      `UPDATE pgtide.table_state SET state = $4, sync_lsn = $5::pg_lsn, rows_copied = coalesce($6::bigint, rows_copied), updated_at = now(),
              copy_owns_rows = copy_owns_rows AND $4 <> 'ready'
        WHERE subscription = $1 AND schema_name = $2 AND table_name = $3`,
      [this.subscription, schema, name, state, syncLsn === undefined ? null : formatLsn(syncLsn), rowsCopied === undefined ? null : String(rowsCopied)]);
  }

  /** Recorded in the transaction that found the table empty, before its first ctid range is copied. */
  async claimCopiedRows(schema: string, name: string, on: Queryable = this.#sql): Promise<void> {
    await on.unsafe(`UPDATE pgtide.table_state SET copy_owns_rows = true WHERE subscription = $1 AND schema_name = $2 AND table_name = $3`, [this.subscription, schema, name]);
  }

  async progress(): Promise<{ endLsn: Lsn; commitTime: Date | null; appliedAt: Date; transactions: number } | undefined> {
    const [row] = await this.#sql.unsafe<{ end_lsn: string; commit_time: Date | null; applied_at: Date; transactions: string }[]>(
      `SELECT end_lsn::text, commit_time, applied_at, transactions::text FROM pgtide.apply_progress WHERE subscription = $1`, [this.subscription]);
    return row ? { endLsn: parseLsn(row.end_lsn), commitTime: row.commit_time, appliedAt: row.applied_at, transactions: Number(row.transactions) } : undefined;
  }

  async deleteSubscription(): Promise<void> {
    await this.#sql.unsafe(`DELETE FROM pgtide.subscription WHERE name = $1`, [this.subscription]);
    await this.#sql.unsafe(`DELETE FROM pgtide.sequence_state WHERE subscription = $1`, [this.subscription]).catch(() => {});
  }
}
