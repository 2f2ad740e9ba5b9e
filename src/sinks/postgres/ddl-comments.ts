/**
 * Comments on a replicated table and its columns (COMMENT ON TABLE/COLUMN),
 * planned from the snapshots like the rest of the table: the source's
 * snapshot holds them by attnum ("0": the table), so a renamed column keeps
 * its comment and the statement text never matters.
 */
import { qualify, quoteIdent } from '../../core/sql.js';
import type { TableSnapshot } from '../../apply/ddl-event.js';
import type { DdlStep } from './ddl-step.js';

const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/** COMMENT statements that turn `before`'s comments into `after`'s (all of `after`'s for a new table). */
export function planComments(before: TableSnapshot | null, after: TableSnapshot): DdlStep[] {
  const old = before?.comments ?? {};
  const now = after.comments ?? {};
  const name = qualify(after.schema, after.name);
  const steps: DdlStep[] = [];
  for (const key of new Set([...Object.keys(old), ...Object.keys(now)])) {
    const text = now[key];
    if (text === old[key]) continue;
    const value = text === undefined ? 'NULL' : literal(text);
    if (key === '0') {
      steps.push({ sql: `COMMENT ON TABLE ${name} IS ${value}`, destructive: false, what: `comment on ${name}` });
      continue;
    }
    const column = after.columns.find((c) => String(c.attnum) === key);
    // A dropped column takes its comment along.
    if (column) steps.push({ sql: `COMMENT ON COLUMN ${name}.${quoteIdent(column.name)} IS ${value}`, destructive: false, what: `comment on column ${column.name}` });
  }
  return steps;
}
