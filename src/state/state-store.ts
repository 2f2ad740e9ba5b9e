/**
 * Reads and writes pgtide's own state in the target's `pgtide` schema:
 * the subscription, each table's copy state and sync LSN, applied progress.
 */
import type postgres from 'postgres';
import { formatLsn, parseLsn, ZERO_LSN, type Lsn } from '../core/lsn.js';
import { fromServerError } from '../core/errors.js';
import { migrateStateSchema } from './state-schema.js';
import type { Queryable } from '../pg/copy-in.js';
import { textArrayLiteral } from '../core/sql.js';
import { tableKey, type TableGateState, type TableSyncState } from '../core/table-sync.js';

export interface SubscriptionRow {
  readonly name: string;
  readonly slotName: string;
  readonly publication: string;
  readonly sourceSystemId: string | null;
  readonly startLsn: Lsn | undefined;
  /** Whether this subscription's state created its slot (see the guardian, src/control/slot-guardian.ts). */
  readonly slotState: 'creating' | 'created' | null;
  readonly sourceTimeline: number | null;
  /** Highest flush position acknowledged to the source (persisted before it was sent). */
  readonly ackedLsn: Lsn | undefined;
  readonly ackedAt: Date | null;
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
    // As JSON, so `status` and `drop` also read a state schema an older pgtide left unmigrated.
    const [found] = await this.#sql.unsafe<{ row: Record<string, unknown> }[]>(`SELECT to_jsonb(s) AS row FROM pgtide.subscription s WHERE name = $1`, [this.subscription]);
    if (!found) return undefined;
    const row = (typeof found.row === 'string' ? JSON.parse(found.row) : found.row) as Record<string, unknown>;
    const text = (key: string): string | null => (typeof row[key] === 'string' ? row[key] : null);
    const slotState = text('slot_state');
    const ackedAt = text('acked_at');
    return {
      name: String(row.name), slotName: String(row.slot_name), publication: String(row.publication), sourceSystemId: text('source_system_id'),
      startLsn: text('start_lsn') ? parseLsn(text('start_lsn')!) : undefined,
      slotState: slotState === 'creating' || slotState === 'created' ? slotState : null,
      sourceTimeline: typeof row.source_timeline === 'number' ? row.source_timeline : null,
      ackedLsn: text('acked_lsn') ? parseLsn(text('acked_lsn')!) : undefined,
      ackedAt: ackedAt ? new Date(ackedAt) : null,
    };
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

  /** Committed before CREATE_REPLICATION_SLOT, so a first start that died can still tell the slot is its own. */
  async markSlotCreating(): Promise<void> {
    await this.#sql.unsafe(`UPDATE pgtide.subscription SET slot_state = 'creating' WHERE name = $1`, [this.subscription]);
  }

  async markSlotCreated(startLsn: Lsn, timeline: number): Promise<void> {
    await this.#sql.unsafe(`UPDATE pgtide.subscription SET slot_state = 'created', start_lsn = $2::pg_lsn, source_timeline = $3, acked_lsn = NULL, acked_at = NULL WHERE name = $1`,
      [this.subscription, formatLsn(startLsn), timeline]);
  }

  async setSourceTimeline(timeline: number): Promise<void> {
    await this.#sql.unsafe(`UPDATE pgtide.subscription SET source_timeline = $2 WHERE name = $1`, [this.subscription, timeline]);
  }

  /** Records a flush position about to be acknowledged to the source; never moves back. */
  async recordAck(lsn: Lsn): Promise<void> {
    await this.#sql.unsafe(
      `UPDATE pgtide.subscription SET acked_lsn = greatest(coalesce(acked_lsn, '0/0'::pg_lsn), $2::pg_lsn), acked_at = now() WHERE name = $1`,
      [this.subscription, formatLsn(lsn)]);
  }

  /**
   * `pgtide resync`: forgets the slot and the applied position and puts every table back
   * to `init`, so the next start creates a new slot and copies everything again.
   */
  async resetForResync(sourceSystemId: string): Promise<void> {
    await this.#sql.begin(async (tx) => {
      await tx.unsafe(`UPDATE pgtide.subscription SET slot_state = NULL, start_lsn = NULL, source_system_id = $2, source_timeline = NULL, acked_lsn = NULL, acked_at = NULL WHERE name = $1`, [this.subscription, sourceSystemId]);
      // The rows on the target are an earlier copy's and may be stale or ahead: the next copy
      // empties each table first (copy_owns_rows), instead of keeping them as local rows.
      await tx.unsafe(`UPDATE pgtide.table_state SET state = 'init', sync_lsn = NULL, rows_copied = 0, copy_owns_rows = true, updated_at = now() WHERE subscription = $1`, [this.subscription]);
      await tx.unsafe(`DELETE FROM pgtide.apply_progress WHERE subscription = $1`, [this.subscription]);
    });
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

  /**
   * `pgtide drop`: forgets the subscription (its table states and progress cascade), its
   * sequences and its last error. False when there was nothing to forget; a target without
   * the state schema (never started) has none.
   */
  async deleteSubscription(): Promise<boolean> {
    const [schema] = await this.#sql.unsafe<{ ok: boolean }[]>(`SELECT to_regclass('pgtide.subscription') IS NOT NULL AS ok`);
    if (!schema?.ok) return false;
    const deleted = await this.#sql.unsafe(`DELETE FROM pgtide.subscription WHERE name = $1`, [this.subscription]);
    // Tables of later migrations: an older state schema may not have them yet.
    await this.#sql.unsafe(`DELETE FROM pgtide.sequence_state WHERE subscription = $1`, [this.subscription]).catch(() => {});
    for (const table of ['last_error', 'conflict_log', 'ddl_snapshot', 'ddl_unhandled', 'ddl_deferred', 'tombstone']) {
      await this.#sql.unsafe(`DELETE FROM pgtide.${table} WHERE subscription = $1`, [this.subscription]).catch(() => {});
    }
    // Quarantine (docs/quarantine.md): what the subscription held back goes with it.
    for (const table of ['quarantine', 'apply_stop']) {
      await this.#sql.unsafe(`DELETE FROM pgtide.${table} WHERE subscription = $1`, [this.subscription]).catch(() => {});
    }
    return deleted.count > 0;
  }
}
