/**
 * update_deleted: an UPDATE for a row that a DELETE removed on the target.
 * PostgreSQL detects it only from 19 on, with a server setting that keeps dead
 * rows around; pgtide keeps tombstones instead (`pgtide.tombstone`, state
 * migration 9), on any version, when `conflicts.tombstones` is on.
 *
 * What is recorded: the deletes pgtide *applies* (keyed tables), one row per
 * table and key, whichever subscription applied it, with the delete's source
 * commit time, origin and transaction. Not local deletes: catching those would
 * need a trigger on every user table, a cost on every local write; the case
 * that matters is a mesh, where node A's delete and node C's concurrent update
 * reach node B on different edges, and both are applied by pgtide.
 *
 * How it is used: only when an UPDATE run falls short (update_missing), the
 * missing keys are looked up in the tombstones in the same statement (no
 * round trip, nothing on the happy path but the tombstone write of deletes):
 * - `error`: the stop names update_deleted instead of update_missing;
 * - `skip`: the update is dropped and logged as update_deleted;
 * - `apply_remote`: the update is dropped when the delete is newer (or either
 *   commit time is unknown: a streamed transaction's), logged with resolution
 *   skip; otherwise the row is inserted back from the complete new row (else
 *   dropped), logged with resolution apply_remote.
 *
 * Tombstones are written by a statement sent with each DELETE run, in the
 * batch's transaction (so exactly when the delete commits), and pruned by
 * age in bounded slices inside apply batches (SKIP LOCKED: never a wait).
 * Tables with tombstones are applied unfolded: each delete carries its own
 * transaction's commit time.
 */
import type { TransactionInfo } from '../../changes/change.js';
import type { TargetTable } from './table-catalog.js';
import type { KeyedUpdate, Statement } from './statements.js';
import { quoteIdent, textArrayLiteral } from '../../core/sql.js';
import { LOG_COLUMNS, SOURCE_COLUMNS, commitTimeOf, jsonRow, literal, sourceArrays, unnestAs, type UpdateGuard } from './conflict-statements.js';
import type { ConflictPolicy } from '../../apply/conflict-policy.js';
import { runColumns } from './update-run-columns.js';

/** At most this many tombstones are pruned per slice, and a slice runs at most this often. */
const PRUNE_ROWS = 10_000;
const PRUNE_EVERY_MS = 10_000;

const colName = (table: TargetTable, i: number): string => quoteIdent(table.columns[i]!.name);

/** The key as tombstone.key and conflict_log.key hold it: a JSON object of the key columns' text values. */
function keyJson(table: TargetTable, alias: string): string {
  const keys = table.relation.keyIndexes;
  return jsonRow(keys.map((i) => table.columns[i]!.name), keys.map((_, p) => `${alias}.c${p}`));
}

export class Tombstones {
  readonly #retentionMs: number | undefined;
  readonly #subscription: string;
  #lastPrune = 0;

  constructor(retentionMs: number | undefined, subscription: string) {
    this.#retentionMs = retentionMs;
    this.#subscription = subscription;
  }

  /** Keyed tables only, and only with `conflicts.tombstones` on. */
  on(table: TargetTable): boolean {
    const { relation } = table;
    return this.#retentionMs !== undefined && relation.replicaIdentity !== 'full' && relation.keyIndexes.length > 0 && table.facts.keyUnique;
  }

  /** Sent with a DELETE run: one tombstone per key (the newest applied delete wins). */
  record(table: TargetTable, keys: readonly (readonly string[])[], sources: readonly TransactionInfo[]): Statement | undefined {
    if (!this.on(table) || sources.length !== keys.length || keys.length === 0) return undefined;
    const k = table.relation.keyIndexes.length;
    const arrays = table.relation.keyIndexes.map((_, p) => textArrayLiteral(keys.map((key) => key[p]!)));
    const params = [...arrays, ...sourceArrays(sources), this.#subscription];
    return {
      text: `INSERT INTO pgtide.tombstone AS ts (table_name, key, subscription, source_origin, delete_commit_time, delete_commit_lsn, source_xid, recorded_at)
        SELECT DISTINCT ON (d.key) ${literal(table.relation.qualifiedName)}, d.key, $${params.length}::text, d.so, ${commitTimeOf('d')}, d.sl::pg_lsn, d.sx::bigint, now()
          FROM (SELECT ${keyJson(table, 'v')} AS key, v.* FROM ${unnestAs(k, SOURCE_COLUMNS, true)}) AS d
         ORDER BY d.key, d.ord DESC
        ON CONFLICT (table_name, key) DO UPDATE SET subscription = EXCLUDED.subscription, source_origin = EXCLUDED.source_origin,
          delete_commit_time = EXCLUDED.delete_commit_time, delete_commit_lsn = EXCLUDED.delete_commit_lsn,
          source_xid = EXCLUDED.source_xid, recorded_at = EXCLUDED.recorded_at`,
      params,
    };
  }

  /**
   * A slice of tombstones older than the retention, when one is due. Locked
   * rows (another subscription's batch writing the same key) are skipped, so
   * the prune never waits.
   */
  pruneDue(now = Date.now()): Statement | undefined {
    const retention = this.#retentionMs;
    if (retention === undefined || now - this.#lastPrune < Math.min(PRUNE_EVERY_MS, retention)) return undefined;
    this.#lastPrune = now;
    return {
      text: `DELETE FROM pgtide.tombstone WHERE ctid = ANY (ARRAY(
               SELECT ctid FROM pgtide.tombstone WHERE recorded_at < now() - $1::text::interval
                ORDER BY recorded_at LIMIT ${PRUNE_ROWS} FOR UPDATE SKIP LOCKED))`,
      params: [`${retention} milliseconds`],
    };
  }

  /**
   * skip / apply_remote: CTEs after the run's UPDATE (conflict-statements.ts,
   * updateLogged) that take the missing rows with a tombstone out of
   * update_missing, resolve them and log them as update_deleted.
   */
  guard(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[], policy: ConflictPolicy): UpdateGuard | undefined {
    if (!this.on(table) || policy === 'error' || rows.length === 0) return undefined;
    const name = table.relation.qualifiedName;
    const keys = table.relation.keyIndexes;
    // updateLogged's parameters: the arrays (key, then SET columns), the four source arrays, the subscription.
    const subscriptionParam = keys.length + setColumns.length + SOURCE_COLUMNS.length + 1;
    const typed = (expr: string, i: number): string => `${expr}::${table.columns[i]!.sqlType}`;
    const { carried, present, complete } = runColumns(table, setColumns);
    const ownAbsent = `NOT EXISTS (SELECT 1 FROM ${name} AS t WHERE ${keys.map((col, p) => `t.${colName(table, col)} = ${typed(`v.c${p}`, col)}`).join(' AND ')})`;
    // The update is newer than the delete: both commit times known, the update's later.
    const updateWins = `(${commitTimeOf('d')} > d.dtime)`;
    const reinsert = policy === 'apply_remote' && complete;
    const resolution = reinsert ? `CASE WHEN ${updateWins} THEN 'apply_remote' ELSE 'skip' END` : `'skip'`;
    const key = keyJson(table, 'd');
    const remoteNew = jsonRow(present.map((i) => table.columns[i]!.name), present.map((i) => carried(i, 'd')!));
    const ctes = [
      `ts_d AS MATERIALIZED (SELECT v.*, ts.delete_commit_time AS dtime, ts.source_origin AS dorigin
          FROM v JOIN pgtide.tombstone AS ts ON ts.table_name = ${literal(name)} AND ts.key = ${keyJson(table, 'v')}
         WHERE (SELECT count(*) FROM u) < (SELECT count(*) FROM v) AND v.ord NOT IN (SELECT u.ord FROM u) AND ${ownAbsent})`,
      ...(reinsert ? [`ts_i AS (INSERT INTO ${name} (${table.columns.map((_, i) => colName(table, i)).join(', ')}) OVERRIDING SYSTEM VALUE
          SELECT ${table.columns.map((_, i) => typed(carried(i, 'd')!, i)).join(', ')} FROM ts_d AS d WHERE ${updateWins})`] : []),
      // local_origin / local_commit_time: the delete's (the tombstone stands for the local row).
      `ts_l AS (INSERT INTO pgtide.conflict_log (${LOG_COLUMNS})
          SELECT $${subscriptionParam}::text, 'update_deleted', ${resolution}, ${literal(name)}, ${key}, ${key}, ${remoteNew}, NULL, d.dorigin, d.dtime,
                 d.sx::bigint, d.sl::pg_lsn, ${commitTimeOf('d')}, d.so
            FROM ts_d AS d
          RETURNING kind, resolution)`,
    ];
    return { missingCtes: ctes.join(',\n      '), missingKeep: 'v.ord NOT IN (SELECT ts_d.ord FROM ts_d)', logged: ['ts_l'] };
  }
}
