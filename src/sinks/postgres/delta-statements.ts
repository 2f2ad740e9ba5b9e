/**
 * Delta columns (docs/conflicts.md, "Delta columns"): for the columns the
 * config names, an UPDATE applies the source's difference instead of its new
 * value, `col = col + (new - old)`, so counters incremented on two nodes of a
 * two-way pair converge (each node adds the other's increments instead of
 * overwriting its own).
 *
 * pgoutput sends the old values of every column only under REPLICA IDENTITY
 * FULL, which the engine checks at start (control/delta-columns.ts); and a
 * FULL table is applied one change per statement and never folded
 * (run-planner.ts, net-effect.ts), so two deltas to one row are never merged
 * into one: each is added on its own. The row is found by the old row minus
 * its delta columns (those may differ on this node: that is the point).
 */
import { PgtideError } from '../../core/errors.js';
import type { Relation } from '../../changes/relation-cache.js';
import type { Tuple } from '../../protocol/messages.js';
import { quoteIdent } from '../../core/sql.js';
import { fullMatch, textOf, type Statement } from './statements.js';
import type { TargetTable } from './table-catalog.js';

/** Delta columns per table, by `Relation.qualifiedName`. */
export type DeltaColumns = ReadonlyMap<string, ReadonlySet<string>>;

/** The UPDATE of a FULL-identity row with delta columns; undefined when the table has none. */
export function deltaUpdateStatement(table: TargetTable, oldTuple: Tuple, newTuple: Tuple, delta: DeltaColumns | undefined): Statement | undefined {
  const names = delta?.get(table.relation.qualifiedName);
  if (!names || names.size === 0) return undefined;
  const deltaIndexes = new Set<number>();
  table.columns.forEach((c, i) => { if (names.has(c.name)) deltaIndexes.add(i); });
  if (deltaIndexes.size === 0) return undefined;
  const params: (string | null)[] = [];
  const sets: string[] = [];
  table.columns.forEach((c, i) => {
    const next = newTuple[i];
    const before = oldTuple[i];
    if (!next || next.kind === 'unchanged') return;
    const name = quoteIdent(c.name);
    const unchangedValue = before !== undefined && before.kind === next.kind && (next.kind === 'null' || (next.kind === 'text' && before.kind === 'text' && before.value === next.value));
    if (deltaIndexes.has(i)) {
      if (unchangedValue) return;
      params.push(textOf(next, table, i));
      const nextParam = `$${params.length}::text::${c.sqlType}`;
      // A NULL on either side has no difference to add: the new value is written as it is.
      if (next.kind === 'null' || !before || before.kind !== 'text') {
        sets.push(`${name} = ${nextParam}`);
        return;
      }
      params.push(before.value);
      sets.push(`${name} = ${name} + (${nextParam} - $${params.length}::text::${c.sqlType})`);
      return;
    }
    // GENERATED ALWAYS identity columns may not be assigned; their value does not change here.
    if (c.identityAlways && unchangedValue) return;
    params.push(textOf(next, table, i));
    sets.push(`${name} = $${params.length}::text::${c.sqlType}`);
  });
  const match = fullMatch(table, oldTuple, params.length + 1, deltaIndexes);
  const qualified = table.relation.qualifiedName;
  if (sets.length === 0) return { text: `SELECT 1 FROM ${qualified} AS f WHERE ${match.where} LIMIT 1`, params: match.params };
  return {
    text: `UPDATE ${qualified} SET ${sets.join(', ')} WHERE (tableoid, ctid) = (SELECT f.tableoid, f.ctid FROM ${qualified} AS f WHERE ${match.where} LIMIT 1)`,
    params: [...params, ...match.params],
  };
}

/**
 * A table with delta columns whose changes arrive without the old values (its
 * replica identity was changed after the start check): applying `col = new`
 * would silently undo the other node's increments, so apply stops.
 */
/**
 * Sent right before a delta UPDATE: locks the rows its old values match
 * (delta columns left out), waiting for a local write that holds one.
 *
 * Why a statement of its own: the UPDATE picks one row by (tableoid, ctid)
 * under its snapshot. A local write (the other node's increment, applied or
 * made here) that commits after that snapshot moves the row to a new ctid;
 * READ COMMITTED then re-checks `ctid = the picked one` on the new version,
 * which fails, and the change finds "no row" (a false update_missing). Once
 * this statement returns, the write it waited for has committed, the rows
 * are ours until the batch commits, and the UPDATE that follows takes a new
 * snapshot in which it sees them. One extra statement per delta UPDATE,
 * pipelined (no round trip); only tables with delta columns pay it. It
 * returns one row, so it runs as a counted statement expecting one.
 */
export function deltaLockStatement(table: TargetTable, oldTuple: Tuple, delta: DeltaColumns | undefined): Statement | undefined {
  const names = delta?.get(table.relation.qualifiedName);
  if (!names || names.size === 0) return undefined;
  const deltaIndexes = new Set<number>();
  table.columns.forEach((c, i) => { if (names.has(c.name)) deltaIndexes.add(i); });
  if (deltaIndexes.size === 0) return undefined;
  const match = fullMatch(table, oldTuple, 1, deltaIndexes);
  return {
    text: `SELECT count(*) FROM (SELECT 1 FROM ${table.relation.qualifiedName} AS f WHERE ${match.where} FOR UPDATE) AS locked`,
    params: match.params,
  };
}

export function refuseDeltaWithoutOldRow(relation: Relation, delta: DeltaColumns | undefined): void {
  if (relation.replicaIdentity === 'full' || !delta?.has(relation.qualifiedName)) return;
  throw new PgtideError('DELTA_COLUMNS_REFUSED', `${relation.qualifiedName} has delta columns (conflicts.deltaColumns) but its changes arrive with REPLICA IDENTITY ${relation.replicaIdentity.toUpperCase()}, without the old values a delta needs. Run ALTER TABLE ${relation.qualifiedName} REPLICA IDENTITY FULL on the source (or remove the table from conflicts.deltaColumns), then start pgtide again.`);
}
