/**
 * The start check of `conflicts.deltaColumns` (docs/conflicts.md, "Delta
 * columns"): a delta `new - old` needs the old value, which pgoutput sends
 * only under REPLICA IDENTITY FULL, and a difference that `+` and `-` can
 * take, so a numeric type on both servers. Every problem is named in one
 * error, before anything streams.
 */
import type postgres from 'postgres';
import { parseQualifiedName, qualify } from '../core/sql.js';
import { fromServerError, PgtideError } from '../core/errors.js';
import type { PublishedTable } from '../source/source-catalog.js';
import type { ConflictsConfig } from './conflict-config.js';

async function numericColumns(sql: postgres.Sql, table: string, side: 'source' | 'target'): Promise<Map<string, { type: string; numeric: boolean }>> {
  const rows = await sql.unsafe<{ name: string; type: string; numeric: boolean }[]>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typcategory = 'N' AS numeric
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, [table]).catch((e: unknown) => { throw fromServerError(e, side); });
  return new Map(rows.map((r) => [r.name, { type: r.type, numeric: r.numeric }]));
}

export async function checkDeltaColumns(source: postgres.Sql, target: postgres.Sql, config: ConflictsConfig, published: readonly PublishedTable[]): Promise<void> {
  const problems: string[] = [];
  for (const [name, columns] of Object.entries(config.deltaColumns)) {
    const parsed = parseQualifiedName(name)!;
    const table = qualify(parsed.schema, parsed.name);
    const found = published.find((t) => t.schema === parsed.schema && t.name === parsed.name);
    if (!found) {
      problems.push(`${table} is not replicated by this subscription`);
      continue;
    }
    if (found.replicaIdentity !== 'full') {
      problems.push(`${table} has REPLICA IDENTITY ${found.replicaIdentity.toUpperCase()} on the source; pgoutput sends the old values a delta needs only under FULL: ALTER TABLE ${table} REPLICA IDENTITY FULL on the source`);
    }
    const [onSource, onTarget] = [await numericColumns(source, table, 'source'), await numericColumns(target, table, 'target')];
    for (const column of columns) {
      for (const [side, found] of [['source', onSource], ['target', onTarget]] as const) {
        const c = found.get(column);
        if (!c) problems.push(`${table} has no column "${column}" on the ${side}`);
        else if (!c.numeric) problems.push(`column "${column}" of ${table} is ${c.type} on the ${side}, not a numeric type: a delta (new - old) needs one`);
      }
    }
  }
  if (problems.length > 0) {
    throw new PgtideError('DELTA_COLUMNS_REFUSED', `conflicts.deltaColumns cannot be used as configured: ${problems.join('; ')}. Fix these (or remove the entries), then start pgtide again (see docs/conflicts.md, "Delta columns").`);
  }
}
