/**
 * Conflict kinds and the policy that resolves them, per pipeline and per
 * table. The kinds are PostgreSQL 18's names (docs: logical-replication
 * conflicts), so a log read by someone who knows the built-in worker means
 * the same thing: https://www.postgresql.org/docs/18/logical-replication-conflicts.html
 *
 * Deciding the policy is sink-independent and lives here; carrying it out is
 * the sink's job (sinks/postgres/conflict-statements.ts).
 */

export const CONFLICT_KINDS = ['insert_exists', 'update_missing', 'delete_missing', 'update_exists', 'multiple_unique_conflicts', 'update_deleted'] as const;
export type ConflictKind = (typeof CONFLICT_KINDS)[number];

/**
 * - `error`: stop apply, as every deterministic error stops (nothing is logged:
 *   the batch rolls back, and the stop names the table, key and transaction).
 * - `skip`: keep the local row; the remote change is logged and dropped.
 * - `apply_remote`: the remote change wins (an existing row is overwritten,
 *   a missing row of an UPDATE is inserted when the new row is complete).
 */
export const CONFLICT_POLICIES = ['error', 'skip', 'apply_remote'] as const;
export type ConflictPolicy = (typeof CONFLICT_POLICIES)[number];

/** What happened to a logged conflict: the local row kept, or the remote change applied. */
export type ConflictResolution = 'skip' | 'apply_remote';

export interface ConflictSettings {
  /** For every table not listed in `tables`. */
  readonly policy: ConflictPolicy;
  /** By quoted qualified name (`"schema"."table"`, as Relation.qualifiedName). */
  readonly tables: ReadonlyMap<string, ConflictPolicy>;
  /**
   * Keep tombstones of the deletes pgtide applies, so that an UPDATE for a row a
   * newer DELETE removed is told apart as `update_deleted` (sinks/postgres/tombstones.ts).
   */
  readonly tombstones?: { readonly retentionMs: number };
}

export const DEFAULT_CONFLICT_SETTINGS: ConflictSettings = { policy: 'error', tables: new Map() };

export function policyFor(settings: ConflictSettings, qualifiedName: string): ConflictPolicy {
  return settings.tables.get(qualifiedName) ?? settings.policy;
}

/** One logged conflict as the apply statement reports it back (for metrics). */
export interface ConflictEvent {
  readonly kind: ConflictKind;
  readonly resolution: ConflictResolution;
  readonly table: string;
}
