/**
 * "Table missing on the target", said once: the start-up check, the initial
 * copy and the writer's table catalog all meet this fact and raise it with
 * these words.
 */
import { PgtideError } from './errors.js';
import { listNames } from './sql.js';

/** `tables` are qualified and quoted for SQL (`"schema"."name"`). */
export function tableMissingOnTarget(tables: readonly string[], cause?: unknown): PgtideError {
  const one = tables.length === 1;
  return new PgtideError(
    'TABLE_MISSING_ON_TARGET',
    `${one ? 'table' : 'tables'} ${listNames(tables)} ${one ? 'does' : 'do'} not exist on the target. pgtide copies rows, not definitions: create ${one ? 'it' : 'them'} on the target first with \`pgtide schema copy --config <file>\` (from the source's catalogs, no pg_dump needed; or set schema.bootstrap: true in the config), then start pgtide again.`,
    { sqlState: '42P01', cause },
  );
}
