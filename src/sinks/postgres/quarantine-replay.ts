/**
 * `pgtide quarantine replay`: a quarantined transaction applied to the target
 * now, in one target transaction that also deletes it from quarantine
 * (docs/quarantine.md). The changes are the JSON of quarantine-record.ts; each
 * value is cast from text to the target column's current type, as the writer
 * does. Rows are found by their key (or, for REPLICA IDENTITY FULL, the whole
 * old row), one row per change; an UPDATE or DELETE whose row is not there
 * fails the replay, which then changes nothing and keeps the transaction.
 */
import type postgres from 'postgres';
import { quoteIdent } from '../../core/sql.js';
import { PgtideError } from '../../core/errors.js';
import type { QuarantinedChange, RowValues } from './quarantine-record.js';

type Query = (text: string, params?: readonly (string | null)[]) => Promise<postgres.RowList<postgres.Row[]>>;

interface Column { readonly type: string; readonly identityAlways: boolean }

async function columnsOf(query: Query, table: string, cache: Map<string, Map<string, Column>>): Promise<Map<string, Column>> {
  const known = cache.get(table);
  if (known) return known;
  const rows = await query(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attidentity = 'a' AS identity_always
       FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped`, [table]);
  const columns = new Map<string, Column>(rows.map((r) => [String(r.name), { type: String(r.type), identityAlways: r.identity_always === true }]));
  cache.set(table, columns);
  return columns;
}

function typed(columns: Map<string, Column>, table: string, name: string): Column {
  const column = columns.get(name);
  if (!column) throw new PgtideError('QUARANTINE_REPLAY_FAILED', `column "${name}" of ${table} is not on the target any more; the quarantined transaction cannot be replayed as it is. Drop it (pgtide quarantine drop) and apply its changes by hand.`);
  return column;
}

/** `alias.col IS NOT DISTINCT FROM $n::type AND …`, parameters appended to `params`. */
function matchKey(alias: string, key: RowValues, columns: Map<string, Column>, table: string, params: (string | null)[]): string {
  const terms = Object.entries(key).map(([name, value]) => {
    params.push(value);
    return `${alias}.${quoteIdent(name)} IS NOT DISTINCT FROM $${params.length}::text::${typed(columns, table, name).type}`;
  });
  return terms.length > 0 ? terms.join(' AND ') : 'true';
}

/** Applies `changes` through `query` (inside the caller's transaction); returns how many were applied. */
export async function replayChanges(query: Query, changes: readonly QuarantinedChange[]): Promise<number> {
  const cache = new Map<string, Map<string, Column>>();
  let applied = 0;
  for (const change of changes) {
    switch (change.kind) {
      case 'message': continue;
      case 'truncate':
        await query(`TRUNCATE ${change.tables.join(', ')}${change.restart_identity ? ' RESTART IDENTITY' : ''}`);
        break;
      case 'insert': {
        const columns = await columnsOf(query, change.table, cache);
        const names = Object.keys(change.new);
        const params = names.map((n) => change.new[n] ?? null);
        const values = names.map((n, i) => `$${i + 1}::text::${typed(columns, change.table, n).type}`);
        await query(`INSERT INTO ${change.table} (${names.map(quoteIdent).join(', ')}) OVERRIDING SYSTEM VALUE VALUES (${values.join(', ')})`, params);
        break;
      }
      case 'update': {
        const columns = await columnsOf(query, change.table, cache);
        const unchanged = new Set(change.unchanged ?? []);
        const params: (string | null)[] = [];
        const sets = Object.entries(change.new).filter(([name]) => !unchanged.has(name) && !(typed(columns, change.table, name).identityAlways && change.key[name] === change.new[name]))
          .map(([name, value]) => {
            params.push(value);
            return `${quoteIdent(name)} = $${params.length}::text::${typed(columns, change.table, name).type}`;
          });
        const where = matchKey('x', change.key, columns, change.table, params);
        const result = sets.length === 0
          ? await query(`SELECT 1 FROM ${change.table} AS x WHERE ${where} LIMIT 1`, params)
          : await query(`UPDATE ${change.table} AS t SET ${sets.join(', ')} WHERE (t.tableoid, t.ctid) = (SELECT x.tableoid, x.ctid FROM ${change.table} AS x WHERE ${where} LIMIT 1)`, params);
        if (result.count === 0) throw missingRow('UPDATE', change.table, change.key);
        break;
      }
      case 'delete': {
        const columns = await columnsOf(query, change.table, cache);
        const params: (string | null)[] = [];
        const where = matchKey('x', change.key, columns, change.table, params);
        const result = await query(`DELETE FROM ${change.table} AS t WHERE (t.tableoid, t.ctid) = (SELECT x.tableoid, x.ctid FROM ${change.table} AS x WHERE ${where} LIMIT 1)`, params);
        if (result.count === 0) throw missingRow('DELETE', change.table, change.key);
        break;
      }
    }
    applied++;
  }
  return applied;
}

function missingRow(what: string, table: string, key: RowValues): PgtideError {
  return new PgtideError('QUARANTINE_REPLAY_FAILED', `the row a quarantined ${what} changes is not on ${table} (key ${JSON.stringify(key)}); nothing of the transaction was applied and it stays quarantined. Fix the target (or drop the transaction: pgtide quarantine drop) and replay again.`);
}
