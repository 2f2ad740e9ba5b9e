/**
 * Where an UPDATE run carries each column of the new row. A run's arrays are
 * laid out by updateByKeyParts (statements.ts): the key columns as c0…c(k-1),
 * then the SET columns as ck…; a column in neither (an unchanged TOAST value
 * the change did not send) is not carried, so only the target's row holds it.
 * The conflict statements that log or re-insert an UPDATE's new row
 * (conflict-statements.ts, conflict-time-statements.ts, tombstones.ts,
 * unique-conflicts.ts) read the row through this one mapping.
 */
import type { TargetTable } from './table-catalog.js';

export interface RunColumns {
  /** `${alias}.cN`, the array column carrying table column i, or undefined when the run does not carry it. */
  readonly carried: (i: number, alias: string) => string | undefined;
  /** The table columns the run carries, in table order. */
  readonly present: readonly number[];
  /** Every column carried: the run alone holds the whole new row (apply_remote may insert it where the row is missing). */
  readonly complete: boolean;
}

export function runColumns(table: TargetTable, setColumns: readonly number[]): RunColumns {
  const keys = table.relation.keyIndexes;
  const k = keys.length;
  // A SET column wins over the key position: a changed key column is carried with its new value.
  const carried = (i: number, alias: string): string | undefined => {
    const at = setColumns.indexOf(i);
    if (at >= 0) return `${alias}.c${k + at}`;
    const p = keys.indexOf(i);
    return p >= 0 ? `${alias}.c${p}` : undefined;
  };
  const present = table.columns.map((_, i) => i).filter((i) => carried(i, 'v') !== undefined);
  return { carried, present, complete: present.length === table.columns.length };
}
