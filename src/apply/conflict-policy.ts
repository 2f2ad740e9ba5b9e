/**
 * Conflict kinds and the policy that resolves them, per pipeline and per
 * table. The kinds are PostgreSQL 18's names (docs: logical-replication
 * conflicts), so a log read by someone who knows the built-in worker means
 * the same thing: https://www.postgresql.org/docs/18/logical-replication-conflicts.html
 *
 * Deciding the policy is sink-independent and lives here; carrying it out is
 * the sink's job (sinks/postgres/conflict-statements.ts).
 */

import type { ConflictResolver } from './conflict-resolver.js';

export const CONFLICT_KINDS = ['insert_exists', 'update_missing', 'delete_missing', 'update_exists', 'multiple_unique_conflicts', 'update_origin_differs', 'delete_origin_differs', 'update_deleted'] as const;
export type ConflictKind = (typeof CONFLICT_KINDS)[number];

/**
 * - `error`: stop apply, as every deterministic error stops (nothing is logged:
 *   the batch rolls back, and the stop names the table, key and transaction).
 * - `skip`: keep the local row; the remote change is logged and dropped.
 * - `apply_remote`: the remote change wins (an existing row is overwritten,
 *   a missing row of an UPDATE is inserted when the new row is complete).
 * - `last_update_wins` / `first_update_wins`: the newer (older) of the source
 *   transaction's commit time and the local row's wins (apply/conflict-time.ts).
 * - `custom`: a resolver module of the user's decides each conflict
 *   (conflict-resolver.ts; sinks/postgres/resolver-apply.ts carries it out).
 */
export const CONFLICT_POLICIES = ['error', 'skip', 'apply_remote', 'last_update_wins', 'first_update_wins', 'custom'] as const;
export type ConflictPolicy = (typeof CONFLICT_POLICIES)[number];

/** What happened to a logged conflict: the local row kept, the remote change applied, or a custom resolver's decision. */
export type ConflictResolution = 'skip' | 'apply_remote' | 'custom:skip' | 'custom:apply_remote' | 'custom:merge';

/** A loaded resolver module: `module` (its path) names it in errors. */
export interface NamedResolver {
  readonly module: string;
  readonly resolve: ConflictResolver;
}

export interface ConflictSettings {
  /** For every table not listed in `tables`. */
  readonly policy: ConflictPolicy;
  /** By quoted qualified name (`"schema"."table"`, as Relation.qualifiedName). */
  readonly tables: ReadonlyMap<string, ConflictPolicy>;
  /** Detect update_origin_differs/delete_origin_differs under skip and apply_remote too (time-based policies always do). */
  readonly detectOriginDiffers?: boolean;
  /** Tie-break of the time-based policies: writers (subscription names, `local`), the first listed wins. */
  readonly nodeOrder?: readonly string[];
  /** The resolver of `custom` tables: per table (same names as `tables`), else `resolver`. */
  readonly resolver?: NamedResolver | undefined;
  readonly tableResolvers?: ReadonlyMap<string, NamedResolver>;
  /**
   * False: no conflict detection at all (`conflicts.detect: false`): the plain statements, a
   * missing row counted, logged to the process log and skipped, a duplicate key stopping apply.
   * Only with policy `error` everywhere (the config refuses anything else).
   */
  readonly detect?: boolean;
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

/** The resolver that decides a `custom` table's conflicts (the config guarantees one exists). */
export function resolverFor(settings: ConflictSettings, qualifiedName: string): NamedResolver | undefined {
  return settings.tableResolvers?.get(qualifiedName) ?? settings.resolver;
}

/** One logged conflict as the apply statement reports it back (for metrics). */
export interface ConflictEvent {
  readonly kind: ConflictKind;
  readonly resolution: ConflictResolution;
  readonly table: string;
}
