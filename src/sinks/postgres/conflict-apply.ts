/**
 * The apply writer's conflict hooks: which statement a run gets under its
 * table's policy (apply/conflict-policy.ts), and what is reported once a
 * batch with logged conflicts commits. The statements themselves are in
 * conflict-statements.ts.
 *
 * Where a run cannot be checked per key (no unique index on the key on the
 * target, a row move of a GENERATED ALWAYS identity key), the hooks decline and the writer uses its plain statement: a missing
 * row is then counted, logged to the process log and skipped, as before.
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import type { TransactionInfo } from '../../changes/change.js';
import type { Tuple } from '../../protocol/messages.js';
import type { TargetTable } from './table-catalog.js';
import type { KeyedUpdate, Statement } from './statements.js';
import { PLAIN_FOLD_STATEMENTS, type CountedStatement, type FoldStatements } from './net-effect.js';
import { deleteLogged, deleteOrStop, fullLogged, fullOrStop, insertLogged, updateLogged, updateOrStop, type FullChange, type LocalCommitInfo, type LoggedRunOptions, type UpdateGuard } from './conflict-statements.js';
import { DEFAULT_CONFLICT_SETTINGS, policyFor, type ConflictEvent, type ConflictKind, type ConflictPolicy, type ConflictResolution, type ConflictSettings } from '../../apply/conflict-policy.js';

/** A run's statement: one that stops on a conflict (checked like any counted statement), or one that logs. */
export type ConflictStep =
  | { readonly logs: false; readonly counted: CountedStatement }
  | { readonly logs: true; readonly statement: Statement };

/**
 * track_commit_timestamp decides whether a local row's commit time (and on
 * PostgreSQL 16+ its origin, pg_xact_commit_timestamp_origin) can be logged;
 * asking for it with the setting off raises an error, so it is read once per session.
 */
export async function readLocalCommitInfo(sql: postgres.Sql): Promise<LocalCommitInfo> {
  const [row] = await sql.unsafe<{ tracked: boolean; version: number }[]>(
    `SELECT current_setting('track_commit_timestamp') = 'on' AS tracked, current_setting('server_version_num')::int AS version`);
  if (!row?.tracked) return 'none';
  return row.version >= 160000 ? 'origin' : 'time';
}

export class ConflictApply {
  readonly #settings: ConflictSettings;
  readonly #subscription: string;
  readonly #local: LocalCommitInfo;

  constructor(settings: ConflictSettings | undefined, subscription: string, local: LocalCommitInfo) {
    this.#settings = settings ?? DEFAULT_CONFLICT_SETTINGS;
    this.#subscription = subscription;
    this.#local = local;
  }

  /** What the target can say about a local row's last writer. */
  get local(): LocalCommitInfo { return this.#local; }

  policy(table: TargetTable): ConflictPolicy {
    return policyFor(this.#settings, table.relation.qualifiedName);
  }

  /**
   * Folding loses each row's source transaction, which skip and apply_remote log, and the
   * commit time a tombstone records (tombstones.ts): only `error` tables without tombstones fold.
   */
  foldable(table: TargetTable): boolean {
    return this.policy(table) === 'error' && this.#settings.tombstones === undefined;
  }

  foldStatements(table: TargetTable): FoldStatements {
    if (this.policy(table) !== 'error') return PLAIN_FOLD_STATEMENTS;
    return {
      deleteByKey: (t, keys) => deleteOrStop(t, keys) ?? PLAIN_FOLD_STATEMENTS.deleteByKey(t, keys),
      keyedUpdates: (t, setColumns, rows) => {
        const checked = updateOrStop(t, setColumns, rows);
        return checked ? [checked] : PLAIN_FOLD_STATEMENTS.keyedUpdates(t, setColumns, rows);
      },
    };
  }

  #logged(table: TargetTable): LoggedRunOptions | undefined {
    const policy = this.policy(table);
    if (policy === 'error') return undefined;
    return { resolution: policy, subscription: this.#subscription, local: this.#local };
  }

  /** Undefined: the plain INSERT (a duplicate key raises 23505, which stops apply). */
  insert(table: TargetTable, rows: readonly Tuple[], sources: readonly TransactionInfo[]): Statement | undefined {
    const logged = this.#logged(table);
    if (!logged || sources.length !== rows.length) return undefined;
    return insertLogged(table, rows, sources, logged);
  }

  update(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[], sources: readonly TransactionInfo[], guard?: UpdateGuard): ConflictStep | undefined {
    const logged = this.#logged(table);
    if (!logged) {
      const counted = updateOrStop(table, setColumns, rows, this.#settings.tombstones !== undefined);
      return counted ? { logs: false, counted } : undefined;
    }
    const statement = sources.length === rows.length ? updateLogged(table, setColumns, rows, sources, logged, guard) : undefined;
    return statement ? { logs: true, statement } : undefined;
  }

  delete(table: TargetTable, keys: readonly (readonly string[])[], sources: readonly TransactionInfo[]): ConflictStep | undefined {
    const logged = this.#logged(table);
    if (!logged) {
      const counted = deleteOrStop(table, keys);
      return counted ? { logs: false, counted } : undefined;
    }
    const statement = sources.length === keys.length ? deleteLogged(table, keys, sources, logged) : undefined;
    return statement ? { logs: true, statement } : undefined;
  }

  /** One UPDATE or DELETE of a REPLICA IDENTITY FULL table (its plain statement is `counted`). */
  full(table: TargetTable, counted: CountedStatement, change: FullChange): ConflictStep | undefined {
    const logged = this.#logged(table);
    if (!logged) {
      const checked = fullOrStop(table, counted, change);
      return checked ? { logs: false, counted: checked } : undefined;
    }
    const statement = fullLogged(table, counted, change, logged);
    return statement ? { logs: true, statement } : undefined;
  }
}

/** The (kind, resolution) rows a logging statement returned, as events of `table`. */
export function conflictEvents(rows: readonly unknown[], table: string): ConflictEvent[] {
  return rows.map((row) => {
    const r = row as { kind: ConflictKind; resolution: ConflictResolution };
    return { kind: r.kind, resolution: r.resolution, table };
  });
}

/** One log line per committed batch that resolved conflicts: counts by table, kind and resolution. */
export function logCommittedConflicts(logger: Logger, events: readonly ConflictEvent[]): void {
  const counts = new Map<string, number>();
  for (const e of events) {
    const key = `${e.table} ${e.kind} → ${e.resolution}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  logger.warn({ conflicts: Object.fromEntries(counts) }, `resolved ${events.length} conflict(s) by policy and logged them in pgtide.conflict_log (see pgtide conflicts)`);
}
