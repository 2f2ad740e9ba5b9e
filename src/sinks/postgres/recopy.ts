/**
 * A table the source rewrote with values the target cannot compute the same
 * way: a column added with a volatile default (`clock_timestamp()`,
 * `nextval`, `random()`) or as an identity column, to a table that has rows.
 * Replaying the ADD COLUMN on the target would fill the existing rows with the
 * target's own values (its clock, its sequence, in its row order), and every
 * later change keyed on them would diverge silently.
 *
 * `ddl.rewriteVolatile: resync` puts the table back to `init` in the DDL's own
 * batch, with `copy_owns_rows` (so the copy empties it first: TRUNCATE, or
 * DELETE when another table's foreign key references it), exactly as
 * `pgtide resync` does for every table. From that point the gate drops the
 * table's changes; once the batch is durable the engine ends the attempt,
 * copies the table under a new snapshot whose point becomes its sync LSN, and
 * streams on (control/engine.ts). A crash in between leaves the table `init`,
 * which the next start copies the same way.
 */
import { PgtideError } from '../../core/errors.js';
import { formatLsn } from '../../core/lsn.js';
import type { DdlPosition } from '../../apply/ddl-stage.js';
import type { DdlQuery } from './apply-writer.js';

export async function markForRecopy(query: DdlQuery, subscription: string, schema: string, name: string): Promise<void> {
  await query(
    `UPDATE pgtide.table_state SET state = 'init', sync_lsn = NULL, rows_copied = 0, copy_owns_rows = true, updated_at = now()
      WHERE subscription = $1 AND schema_name = $2 AND table_name = $3`,
    [subscription, schema, name]);
}

export function rewriteVolatileError(table: string, statement: string | null, at: DdlPosition): PgtideError {
  const text = statement ? ` (${statement.replace(/\s+/g, ' ').trim().slice(0, 200)})` : '';
  return new PgtideError('DDL_REWRITE_VOLATILE', `the source added a column to ${table}${text} whose values for the existing rows the target cannot reproduce (a volatile default such as clock_timestamp() or nextval, or an identity column), in the source transaction committed at LSN ${formatLsn(at.commitLsn)} (DDL #${at.ordinal} of it). ddl.rewriteVolatile is error, so nothing was applied. Set ddl.rewriteVolatile: resync (pgtide then copies the table again) and restart, or run \`pgtide ddl skip --config <file>\` to move past it and fix the column's values on the target yourself.`);
}
