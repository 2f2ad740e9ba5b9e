/**
 * A column the source added with a non-volatile, non-constant default
 * (`DEFAULT now()`, `current_user`, `statement_timestamp()`, …): the source
 * evaluated it once and its existing rows read that value
 * (pg_attribute.attmissingval; source/ddl-missing-value.ts). Replaying
 * `ADD COLUMN … DEFAULT now()` would give the target's rows the target's
 * value, so the column is added with the source's value as a literal default
 * (PostgreSQL stores it as the target's missing value, again without a
 * rewrite) and the real expression is set right after, in the same batch: the
 * existing rows hold the source's value, new rows get the expression.
 */
import type { ColumnSnapshot } from '../../apply/ddl-event.js';

const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/**
 * The column with the source's stored value as its default, when that value is
 * not what replaying the default gives anyway (a constant: `7`, `'x'::text`);
 * undefined otherwise (no stored value, identity, generated).
 */
export function seededColumn(c: ColumnSnapshot): ColumnSnapshot | undefined {
  if (c.missing === undefined || c.default === null || c.generated !== null || c.identity !== '') return undefined;
  const seeded = `${literal(c.missing)}::${c.type}`;
  if (c.default === seeded || c.default === c.missing) return undefined;
  return { ...c, default: seeded };
}
