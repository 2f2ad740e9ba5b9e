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
import { deleteCheckingOrigin, insertByTime, updateCheckingOrigin, type OriginCheckOptions } from './conflict-time-statements.js';
import { checksOrigin, isTimePolicy, needsCommitTimestamps } from '../../apply/conflict-time.js';
import { PgtideError } from '../../core/errors.js';
import type { CustomRunOptions } from './resolver-apply.js';
import { DEFAULT_CONFLICT_SETTINGS, policyFor, resolverFor, type ConflictEvent, type ConflictKind, type ConflictPolicy, type ConflictResolution, type ConflictSettings } from '../../apply/conflict-policy.js';

/** A run's statement: one that stops on a conflict (checked like any counted statement), or one that logs. */
export type ConflictStep =
  | { readonly logs: false; readonly counted: CountedStatement }
  | { readonly logs: true; readonly statement: Statement };

/**
 * track_commit_timestamp decides whether a local row's commit time and origin
 * (pg_xact_commit_timestamp_origin, PostgreSQL 14+) can be read; asking for
 * them with the setting off raises an error, so it is read once per session.
 */
export async function readLocalCommitInfo(sql: postgres.Sql): Promise<LocalCommitInfo> {
  const [row] = await sql.unsafe<{ tracked: boolean; version: number }[]>(
    `SELECT current_setting('track_commit_timestamp') = 'on' AS tracked, current_setting('server_version_num')::int AS version`);
  if (!row?.tracked) return 'none';
  return row.version >= 140000 ? 'origin' : 'time';
}

export class ConflictApply {
  readonly #settings: ConflictSettings;
  readonly #subscription: string;
  readonly #local: LocalCommitInfo;
  readonly #originName: string;

  /** `originName`: the edge's replication origin, whose rows are its own (no origin differs); the writer always passes it. */
  constructor(settings: ConflictSettings | undefined, subscription: string, local: LocalCommitInfo, originName = '') {
    this.#settings = settings ?? DEFAULT_CONFLICT_SETTINGS;
    this.#subscription = subscription;
    this.#local = local;
    this.#originName = originName;
    // Start-up checks this first (control/commit-timestamp-check.ts); a target restarted with the setting off meanwhile ends here.
    if (local === 'none' && needsCommitTimestamps(this.#settings)) throw commitTimestampOff();
  }

  /** Tables whose policy compares the local row's last writer with this edge (apply/conflict-time.ts). */
  #originCheck(table: TargetTable): OriginCheckOptions | undefined {
    const policy = this.policy(table);
    if (!checksOrigin(this.#settings, policy)) return undefined;
    return { policy, subscription: this.#subscription, originName: this.#originName, nodeOrder: this.#settings.nodeOrder };
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

  /** `conflicts.detect: false`: the plain statements, as before detection existed (conflict-policy.ts). */
  get #detect(): boolean {
    return this.#settings.detect !== false;
  }

  /** A `custom` table's resolver (resolver-apply.ts carries out its decisions), or undefined. */
  custom(table: TargetTable): CustomRunOptions | undefined {
    if (!this.#detect || this.policy(table) !== 'custom') return undefined;
    const resolver = resolverFor(this.#settings, table.relation.qualifiedName);
    return resolver ? { resolver, subscription: this.#subscription, local: this.#local } : undefined;
  }

  foldStatements(table: TargetTable): FoldStatements {
    if (this.policy(table) !== 'error' || !this.#detect) return PLAIN_FOLD_STATEMENTS;
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
    // custom: resolver-apply.ts; a run it cannot probe gets error's statements (or the plain ones).
    if (policy === 'error' || policy === 'custom') return undefined;
    // REPLICA IDENTITY FULL tables are not compared by time: a missing row is kept missing, as under skip.
    return { resolution: isTimePolicy(policy) ? 'skip' : policy, subscription: this.#subscription, local: this.#local };
  }

  /** Undefined: the plain INSERT (a duplicate key raises 23505, which stops apply). */
  insert(table: TargetTable, rows: readonly Tuple[], sources: readonly TransactionInfo[]): Statement | undefined {
    if (!this.#detect) return undefined;
    const byTime = this.#originCheck(table);
    if (byTime && isTimePolicy(byTime.policy)) return sources.length === rows.length ? insertByTime(table, rows, sources, byTime) : undefined;
    const logged = this.#logged(table);
    if (!logged || sources.length !== rows.length) return undefined;
    return insertLogged(table, rows, sources, logged);
  }

  update(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[], sources: readonly TransactionInfo[], guard?: UpdateGuard): ConflictStep | undefined {
    if (!this.#detect) return undefined;
    const byOrigin = this.#originCheck(table);
    if (byOrigin) {
      const statement = sources.length === rows.length ? updateCheckingOrigin(table, setColumns, rows, sources, byOrigin) : undefined;
      return statement ? { logs: true, statement } : undefined;
    }
    const logged = this.#logged(table);
    if (!logged) {
      const counted = updateOrStop(table, setColumns, rows, this.#settings.tombstones !== undefined);
      return counted ? { logs: false, counted } : undefined;
    }
    const statement = sources.length === rows.length ? updateLogged(table, setColumns, rows, sources, logged, guard) : undefined;
    return statement ? { logs: true, statement } : undefined;
  }

  delete(table: TargetTable, keys: readonly (readonly string[])[], sources: readonly TransactionInfo[]): ConflictStep | undefined {
    if (!this.#detect) return undefined;
    const byOrigin = this.#originCheck(table);
    if (byOrigin) {
      const statement = sources.length === keys.length ? deleteCheckingOrigin(table, keys, sources, byOrigin) : undefined;
      return statement ? { logs: true, statement } : undefined;
    }
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
    if (!this.#detect) return undefined;
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

/** The one error for a conflict setting that needs commit timestamps on a target without them. */
export function commitTimestampOff(): PgtideError {
  return new PgtideError('COMMIT_TIMESTAMP_OFF', `the conflict settings (a last_update_wins or first_update_wins policy, or conflicts.detectOriginDiffers) need the local rows' commit times and origins, and the target has track_commit_timestamp = off. Set track_commit_timestamp = on in the target's postgresql.conf (or ALTER SYSTEM SET track_commit_timestamp = on) and restart the target server (the setting needs a restart), or choose error, skip or apply_remote; see docs/conflicts.md.`);
}
