/**
 * The custom conflict resolver: a function in a module of the user's, named in
 * the config (`conflicts: { policy: custom, resolver: ./resolver.js }`), that
 * decides each conflict of its tables (docs/conflicts.md, "Custom resolver").
 *
 * This file is the public entry `pgtide/resolver` (package.json "exports"):
 * users write their resolver in TypeScript against these types. It imports
 * nothing, so its declaration file stands alone.
 *
 * DETERMINISM: a resolver must return the same decision for the same input on
 * every node and every time it is called. pgtide calls it again for the same
 * conflict after a crash or a retry (the batch that called it rolled back),
 * and in a two-way or mesh set-up each node resolves its own side of a
 * conflict: a decision that depends on the clock, randomness, the network or
 * state kept between calls makes nodes diverge. Decide from the arguments only.
 */

/** Column values as PostgreSQL's text output writes them (as pgoutput sends them); SQL NULL is null. */
export type ResolverRow = Readonly<Record<string, string | null>>;

/** The conflicts a resolver decides (PostgreSQL 18's names). */
export type ResolvableConflictKind = 'insert_exists' | 'update_missing' | 'delete_missing';

export interface ResolverConflict {
  readonly kind: ResolvableConflictKind;
  /** The target table (unquoted names). */
  readonly table: { readonly schema: string; readonly name: string };
  /** The replica identity key of the conflicting row (for REPLICA IDENTITY FULL, the whole old row). */
  readonly key: ResolverRow;
  readonly remote: {
    /** The source's old key (update_missing, delete_missing); null for insert_exists. */
    readonly old: ResolverRow | null;
    /**
     * The source's new row (insert_exists, update_missing); null for delete_missing.
     * A column the source sent as unchanged TOAST is absent.
     */
    readonly new: ResolverRow | null;
  };
  /**
   * The local row with the same key (insert_exists), or null (update_missing,
   * delete_missing, or an insert that met another unique index than the key's).
   * `origin` and `commitTime` say who last wrote it and when, when the target
   * has track_commit_timestamp = on (origin on PostgreSQL 16+; null for a row
   * written locally, or by the same batch); otherwise null.
   */
  readonly local: {
    readonly row: ResolverRow;
    readonly origin: string | null;
    /** UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds): compare as strings. */
    readonly commitTime: string | null;
  } | null;
  /** The source transaction of the change (commit LSN and time are null for a large transaction applied while it streams). */
  readonly source: {
    readonly xid: number;
    readonly commitLsn: string | null;
    /** UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds), the source's own commit time. */
    readonly commitTime: string | null;
    /** The replication origin the source transaction carried (a change that came from another node), or null. */
    readonly origin: string | null;
  };
}

/**
 * - `skip`: keep the local row, drop the remote change.
 * - `apply_remote`: the remote change wins (insert_exists: the local row gets
 *   the remote values; update_missing: the new row is inserted, which needs
 *   every column in `remote.new`; delete_missing: nothing left to delete).
 * - `merge`: the columns to change in the row that would otherwise be left.
 *   insert_exists: the local row gets the listed columns (key columns may be
 *   listed only with their current value); update_missing: the remote new row
 *   is inserted with the listed columns overriding its values (a column in
 *   neither takes its default). Not valid for delete_missing.
 * - `error`: stop apply, as the `error` policy does (nothing of the batch is
 *   applied); `reason` goes into the error message.
 */
export type ResolverDecision =
  | { readonly action: 'skip' }
  | { readonly action: 'apply_remote' }
  | { readonly action: 'merge'; readonly row: ResolverRow }
  | { readonly action: 'error'; readonly reason?: string };

/** What a resolver may return: a decision, or its action alone for skip, apply_remote and error. */
export type ResolverResult = ResolverDecision | 'skip' | 'apply_remote' | 'error';

/**
 * The default export of a resolver module. Must be deterministic (see the top
 * of this file). May be async; it is awaited before the next change of its
 * table is applied. Throwing, or returning anything else than a
 * ResolverResult, stops apply (CONFLICT_RESOLVER_FAILED).
 */
export type ConflictResolver = (conflict: ResolverConflict) => ResolverResult | Promise<ResolverResult>;

/** What a valid result means for one conflict, or why it is not valid. */
export type CheckedDecision = { readonly ok: ResolverDecision } | { readonly problem: string };

/**
 * Validates a resolver's result against its conflict: `columns` are the
 * target table's columns, `keyColumns` its key's. Runs for every result, so a
 * resolver typed loosely (plain JavaScript) still cannot write nonsense.
 */
export function checkDecision(value: unknown, conflict: ResolverConflict, columns: readonly string[], keyColumns: readonly string[]): CheckedDecision {
  const decision = normalize(value);
  if (typeof decision === 'string') return { problem: decision };
  switch (decision.action) {
    case 'skip':
    case 'error':
      return { ok: decision };
    case 'apply_remote': {
      if (conflict.kind !== 'update_missing') return { ok: decision };
      const absent = columns.filter((c) => !Object.hasOwn(conflict.remote.new ?? {}, c));
      if (absent.length > 0) return { problem: `apply_remote on update_missing needs every column, and the change does not carry ${absent.join(', ')} (unchanged TOAST values, which only the missing row held); return { action: 'merge', row } with them, or skip` };
      return { ok: decision };
    }
    case 'merge': {
      if (conflict.kind === 'delete_missing') return { problem: 'merge is not a decision for delete_missing (there is no row to merge into); return skip, apply_remote or error' };
      const unknown = Object.keys(decision.row).filter((c) => !columns.includes(c));
      if (unknown.length > 0) return { problem: `the merged row names column(s) ${unknown.join(', ')} that the table does not have (columns: ${columns.join(', ')})` };
      const bad = Object.entries(decision.row).filter(([, v]) => v !== null && typeof v !== 'string').map(([c]) => c);
      if (bad.length > 0) return { problem: `the merged row's values must be strings (PostgreSQL's text form) or null; ${bad.join(', ')} is not` };
      if (conflict.kind === 'insert_exists') {
        const moved = keyColumns.filter((c) => Object.hasOwn(decision.row, c) && decision.row[c] !== conflict.key[c]);
        if (moved.length > 0) return { problem: `the merged row changes key column(s) ${moved.join(', ')} of the local row; a merge may not change the key` };
      }
      return { ok: decision };
    }
  }
}

function normalize(value: unknown): ResolverDecision | string {
  if (value === 'skip' || value === 'apply_remote' || value === 'error') return { action: value };
  if (value === null || typeof value !== 'object') return `it returned ${describe(value)}; return 'skip', 'apply_remote', 'error' or { action: 'merge', row }`;
  const action = (value as { action?: unknown }).action;
  if (action === 'skip' || action === 'apply_remote') return { action };
  if (action === 'error') {
    const reason = (value as { reason?: unknown }).reason;
    return reason === undefined ? { action } : { action, reason: String(reason) };
  }
  if (action === 'merge') {
    const row = (value as { row?: unknown }).row;
    if (row === null || typeof row !== 'object' || Array.isArray(row)) return `it returned a merge whose row is ${describe(row)}; give the row as an object of column name → text value`;
    return { action, row: row as ResolverRow };
  }
  return `it returned an object whose action is ${describe(action)}; use skip, apply_remote, merge or error`;
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    const text = JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 80)}…` : text;
  } catch {
    return typeof value;
  }
}
