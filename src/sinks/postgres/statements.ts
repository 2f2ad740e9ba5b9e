/**
 * Set-based SQL for runs of row changes.
 *
 * Values arrive as text and go to the server as text: every column of a run
 * becomes one `text[]` parameter, unnested and cast to the target column's
 * type inside the statement. One statement per run (instead of one per row)
 * is what lets an engine outside the database beat the built-in apply worker:
 * the per-statement cost (parse, plan, round trip) is paid once per run.
 * Statement texts depend only on table, kind and column set, so the writer
 * sends each as a named prepared statement, parsed once per connection.
 *
 * Every parameter is declared `text` (`$n::text::type`, never `$n::type`):
 * postgres.js serializes a parameter by the type the server infers for it, and
 * would round a timestamptz through a JS Date (losing microseconds) or quote a
 * json value again. Declared as text, values pass through untouched.
 */
import type { Tuple, TupleValue } from '../../protocol/messages.js';
import type { TargetTable } from './table-catalog.js';
import { PgtideError } from '../../core/errors.js';
import { quoteIdent, textArrayLiteral } from '../../core/sql.js';

export interface Statement {
  readonly text: string;
  readonly params: readonly (string | null)[];
}

export function textOf(value: TupleValue | undefined, table: TargetTable, column: number): string | null {
  if (!value || value.kind === 'null') return null;
  if (value.kind === 'text') return value.value;
  if (value.kind === 'binary') {
    throw new PgtideError('PROTOCOL_VIOLATION', `column "${table.columns[column]?.name}" of ${table.relation.qualifiedName} arrived in binary format, which pgtide does not request`);
  }
  throw new PgtideError('PROTOCOL_VIOLATION', `column "${table.columns[column]?.name}" of ${table.relation.qualifiedName} arrived as unchanged TOAST where a value is required`);
}

function unnestFrom(arrays: number, firstParam = 1): string {
  const params: string[] = [];
  const names: string[] = [];
  for (let i = 0; i < arrays; i++) {
    params.push(`$${firstParam + i}::text[]`);
    names.push(`c${i}`);
  }
  return `unnest(${params.join(', ')}) AS v(${names.join(', ')})`;
}

function column(table: TargetTable, index: number): { readonly name: string; readonly type: string; readonly asText: boolean } {
  const c = table.columns[index]!;
  return { name: quoteIdent(c.name), type: c.sqlType, asText: c.compareAsText };
}

/** Equality that also matches NULLs, on the column's type or its text form when the type has no `=`. */
function matches(table: TargetTable, index: number, expression: string, target = 't'): string {
  const c = column(table, index);
  return c.asText
    ? `${target}.${c.name}::text IS NOT DISTINCT FROM ${expression}`
    : `${target}.${c.name} IS NOT DISTINCT FROM ${expression}::text::${c.type}`;
}

export function insertStatement(table: TargetTable, rows: readonly Tuple[]): Statement {
  const n = table.columns.length;
  if (n === 0) {
    // A table with no columns (CREATE TABLE t ()): rows hold no values, only their count.
    return { text: `INSERT INTO ${table.relation.qualifiedName} SELECT FROM generate_series(1, $1::text::int)`, params: [String(rows.length)] };
  }
  const columns: (string | null)[][] = Array.from({ length: n }, () => new Array<string | null>(rows.length));
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    for (let c = 0; c < n; c++) columns[c]![r] = textOf(row[c], table, c);
  }
  const names = table.columns.map((_, i) => column(table, i).name).join(', ');
  const casts = table.columns.map((_, i) => `v.c${i}::${column(table, i).type}`).join(', ');
  return {
    // OVERRIDING SYSTEM VALUE: the source already drew GENERATED ALWAYS identity values; keep them.
    text: `INSERT INTO ${table.relation.qualifiedName} (${names}) OVERRIDING SYSTEM VALUE SELECT ${casts} FROM ${unnestFrom(n)}`,
    params: columns.map(textArrayLiteral),
  };
}

/** COPY … FROM STDIN and its data, in text format, cut into chunks of about `COPY_CHUNK_CHARS`. */
export interface CopyStatement {
  readonly text: string;
  readonly chunks: readonly string[];
  readonly rows: number;
}

const COPY_CHUNK_CHARS = 1 << 20;
const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIAL_ALL = /[\\\n\r\t]/g;
const COPY_ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * The same rows as `insertStatement`, as COPY text format: the values are the
 * source's output text, which the target's input functions read back, exactly
 * as with the text[] casts of `insertStatement`. COPY skips the executor's
 * per-row projection of INSERT … SELECT unnest(…): 1 M narrow rows took 4.3 s
 * instead of 5.9 s on the target. COPY also writes GENERATED ALWAYS identity
 * columns as given, which INSERT needs OVERRIDING SYSTEM VALUE for.
 */
export function copyInsertStatement(table: TargetTable, rows: readonly Tuple[]): CopyStatement {
  const n = table.columns.length;
  const chunks: string[] = [];
  let chunk = '';
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    for (let c = 0; c < n; c++) {
      const value = textOf(row[c], table, c);
      if (c > 0) chunk += '\t';
      if (value === null) chunk += '\\N';
      else chunk += COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (m) => COPY_ESCAPES[m]!) : value;
    }
    chunk += '\n';
    if (chunk.length >= COPY_CHUNK_CHARS) {
      chunks.push(chunk);
      chunk = '';
    }
  }
  if (chunk.length > 0) chunks.push(chunk);
  const names = table.columns.map((_, i) => column(table, i).name).join(', ');
  // No column list for a table with no columns: each row is then an empty line.
  return { text: `COPY ${table.relation.qualifiedName}${n > 0 ? ` (${names})` : ''} FROM STDIN`, chunks, rows: rows.length };
}

export interface KeyedUpdate {
  readonly key: readonly string[];
  readonly newTuple: Tuple;
}

/**
 * Key columns an UPDATE may assign: all but GENERATED ALWAYS identity columns
 * (only INSERT may write those). Leaving one out is invisible: identity
 * columns are integers, whose equal values have one spelling.
 */
function settableKeyColumns(table: TargetTable): readonly number[] {
  return table.relation.keyIndexes.filter((i) => !table.columns[i]!.identityAlways);
}

/** An update that changes no column but the key still writes the key (see updateByKeyStatement). */
export function hasSettableKey(table: TargetTable): boolean {
  return settableKeyColumns(table).length > 0;
}

/**
 * UPDATE … FROM unnest(keys, values): one statement for many rows. The caller
 * guarantees that a key appears at most once per run (a joined UPDATE applies
 * only one of several matches) and that every row has the same `setColumns`
 * (columns that arrived as unchanged TOAST are left out of SET, so the target
 * keeps its value).
 *
 * Key columns not in `setColumns` (the key did not change) are assigned from
 * the key arrays: the built-in worker writes the whole new row, so a target
 * key spelled differently but equal (numeric 1.00 for 1.0, a decomposed
 * string under a nondeterministic collation) takes the source's spelling.
 * That costs no extra parameter, and an equal value keeps the update HOT.
 */
export function updateByKeyStatement(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[]): Statement {
  const { set, where, arrays } = updateByKeyParts(table, setColumns, rows);
  return {
    text: guardRowCount(table, 'UPDATE', `UPDATE ${table.relation.qualifiedName} AS t SET ${set} FROM ${unnestFrom(arrays.length)} WHERE ${where}`),
    params: arrays.map(textArrayLiteral),
  };
}

/**
 * The SET list and WHERE clause of updateByKeyStatement over `v(c0, …)`, and
 * its arrays (key columns, then `setColumns`); conflict-statements.ts builds
 * its conflict-detecting UPDATE from the same parts.
 */
export function updateByKeyParts(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[]): { readonly set: string; readonly where: string; readonly arrays: (string | null)[][] } {
  const keyIndexes = table.relation.keyIndexes;
  const k = keyIndexes.length;
  const arrays: (string | null)[][] = Array.from({ length: k + setColumns.length }, () => new Array<string | null>(rows.length));
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    for (let i = 0; i < k; i++) arrays[i]![r] = row.key[i]!;
    for (let i = 0; i < setColumns.length; i++) arrays[k + i]![r] = textOf(row.newTuple[setColumns[i]!], table, setColumns[i]!);
  }
  const keySet = settableKeyColumns(table).filter((col) => !setColumns.includes(col))
    .map((col) => `${column(table, col).name} = v.c${keyIndexes.indexOf(col)}::${column(table, col).type}`);
  const set = [...keySet, ...setColumns.map((col, i) => `${column(table, col).name} = v.c${k + i}::${column(table, col).type}`)].join(', ');
  const where = keyIndexes.map((col, i) => `t.${column(table, col).name} = v.c${i}::${column(table, col).type}`).join(' AND ');
  return { set, where, arrays };
}

/**
 * UPDATE may not assign a GENERATED ALWAYS identity column (only INSERT can,
 * with OVERRIDING SYSTEM VALUE), yet the source may have changed one (a key
 * change, or `SET id = DEFAULT`). Such a row is moved instead: deleted and
 * re-inserted in one statement, taking unchanged-TOAST columns from the
 * deleted row. Replica role means no triggers or FK checks see the move.
 */
export function moveRowStatement(table: TargetTable, key: readonly string[], newTuple: Tuple): Statement {
  const params: (string | null)[] = [...key];
  const where = table.relation.keyIndexes.map((col, i) => `t.${column(table, col).name} = $${i + 1}::text::${column(table, col).type}`).join(' AND ');
  const values = table.columns.map((_, i) => {
    const value = newTuple[i];
    if (!value || value.kind === 'unchanged') return `old.${column(table, i).name}`;
    params.push(textOf(value, table, i));
    return `$${params.length}::text::${column(table, i).type}`;
  });
  const names = table.columns.map((_, i) => column(table, i).name).join(', ');
  const name = table.relation.qualifiedName;
  return {
    text: `WITH old AS (DELETE FROM ${name} AS t WHERE ${where} RETURNING t.*) INSERT INTO ${name} (${names}) OVERRIDING SYSTEM VALUE SELECT ${values.join(', ')} FROM old`,
    params,
  };
}

/** Counted statements for a run of keyed updates: one set-based UPDATE, or row moves where UPDATE cannot assign. */
export function keyedUpdateStatements(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[]): { readonly statement: Statement; readonly expectedRows: number; readonly operation: 'UPDATE' }[] {
  if (setColumns.some((i) => table.columns[i]!.identityAlways)) {
    return rows.map((row) => ({ statement: moveRowStatement(table, row.key, row.newTuple), expectedRows: 1, operation: 'UPDATE' as const }));
  }
  return [{ statement: updateByKeyStatement(table, setColumns, rows), expectedRows: rows.length, operation: 'UPDATE' }];
}

export function deleteByKeyStatement(table: TargetTable, keys: readonly (readonly string[])[]): Statement {
  const keyIndexes = table.relation.keyIndexes;
  const arrays: string[][] = keyIndexes.map((_, i) => keys.map((key) => key[i]!));
  const where = keyIndexes.map((col, i) => `t.${column(table, col).name} = v.c${i}::${column(table, col).type}`).join(' AND ');
  return {
    text: guardRowCount(table, 'DELETE', `DELETE FROM ${table.relation.qualifiedName} AS t USING ${unnestFrom(arrays.length)} WHERE ${where}`),
    params: arrays.map(textArrayLiteral),
  };
}

/**
 * A keyed statement touches one target row per key only if the target
 * enforces that: the built-in worker changes exactly one row per change.
 * Without a unique index on the key (table.facts.keyUnique), a target holding
 * duplicates of a key would have one source change applied to several rows,
 * silently. So there the statement counts the rows it changed and fails,
 * inside the batch's transaction (which then rolls back), when they outnumber
 * the keys it was given ($1 holds one element per key). The error is an input
 * error on purpose: a CASE whose THEN branch depends on the CTE is evaluated
 * only when taken. With the unique index, nothing is added.
 */
function guardRowCount(table: TargetTable, operation: 'UPDATE' | 'DELETE', statement: string): string {
  if (table.facts.keyUnique) return statement;
  const message = `pgtide: ${operation} of ${table.relation.qualifiedName} matched more target rows than source changes; the target holds duplicate rows for a replica identity key. Remove the duplicates (or add a unique index on the key) on the target; pgtide retries. Rows matched: `;
  return `WITH w AS (${statement} RETURNING 1) SELECT 1 FROM w WHERE CASE WHEN (SELECT count(*) FROM w) > cardinality($1::text[]) THEN (${quoteLiteral(message)} || (SELECT count(*) FROM w))::int ELSE 1 END = 1`;
}

function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * REPLICA IDENTITY FULL: the old row is the identity. Several target rows can
 * be identical, and exactly one must be touched per change, so the statement
 * picks one physical row among the matches. A ctid is unique only within one
 * heap: a partitioned target has one heap per partition, so the row is
 * addressed by (tableoid, ctid). The planner keeps a TID scan for the ctid
 * half and filters on tableoid (checked on PostgreSQL 14 and 18).
 */
const ONE_ROW = '(tableoid, ctid)';

/** The old row's match (alias `f`); columns in `skip` are left out (delta columns, delta-statements.ts). */
export function fullMatch(table: TargetTable, oldTuple: Tuple, firstParam: number, skip?: ReadonlySet<number>): { readonly where: string; readonly params: (string | null)[] } {
  const parts: string[] = [];
  const params: (string | null)[] = [];
  table.columns.forEach((_, i) => {
    const value = oldTuple[i];
    if (!value || value.kind === 'unchanged' || skip?.has(i)) return;
    params.push(textOf(value, table, i));
    parts.push(matches(table, i, `$${firstParam + params.length - 1}`, 'f'));
  });
  return { where: parts.length ? parts.join(' AND ') : 'true', params };
}

export function updateFullStatement(table: TargetTable, oldTuple: Tuple, newTuple: Tuple): Statement {
  // The whole new row, as the built-in worker writes it (a matched row may spell an equal value
  // differently), except unchanged TOAST and GENERATED ALWAYS identity columns whose value did
  // not change: UPDATE may not assign those, and their equal values have one spelling.
  const setColumns = table.columns.map((_, i) => i).filter((i) => {
    const next = newTuple[i];
    if (!next || next.kind === 'unchanged') return false;
    if (!table.columns[i]!.identityAlways) return true;
    const before = oldTuple[i];
    return !(before && before.kind === next.kind && (next.kind === 'null' || (next.kind === 'text' && before.kind === 'text' && before.value === next.value)));
  });
  const params: (string | null)[] = setColumns.map((i) => textOf(newTuple[i], table, i));
  const set = setColumns.map((col, i) => `${column(table, col).name} = $${i + 1}::text::${column(table, col).type}`).join(', ');
  const match = fullMatch(table, oldTuple, params.length + 1);
  const name = table.relation.qualifiedName;
  if (setColumns.length === 0) {
    // Nothing changed: still look the row up, so a missing row is noticed like any other.
    return { text: `SELECT 1 FROM ${name} AS f WHERE ${match.where} LIMIT 1`, params: match.params };
  }
  if (setColumns.some((i) => table.columns[i]!.identityAlways)) {
    // See moveRowStatement: an UPDATE may not assign a GENERATED ALWAYS identity column.
    const values = table.columns.map((_, i) => {
      const at = setColumns.indexOf(i);
      return at >= 0 ? `$${at + 1}::text::${column(table, i).type}` : `old.${column(table, i).name}`;
    });
    const names = table.columns.map((_, i) => column(table, i).name).join(', ');
    return {
      text: `WITH old AS (DELETE FROM ${name} WHERE ${ONE_ROW} = (SELECT f.tableoid, f.ctid FROM ${name} AS f WHERE ${match.where} LIMIT 1) RETURNING *) INSERT INTO ${name} (${names}) OVERRIDING SYSTEM VALUE SELECT ${values.join(', ')} FROM old`,
      params: [...params, ...match.params],
    };
  }
  return {
    text: `UPDATE ${name} SET ${set} WHERE ${ONE_ROW} = (SELECT f.tableoid, f.ctid FROM ${name} AS f WHERE ${match.where} LIMIT 1)`,
    params: [...params, ...match.params],
  };
}

export function deleteFullStatement(table: TargetTable, oldTuple: Tuple): Statement {
  const match = fullMatch(table, oldTuple, 1);
  const name = table.relation.qualifiedName;
  return {
    text: `DELETE FROM ${name} WHERE ${ONE_ROW} = (SELECT f.tableoid, f.ctid FROM ${name} AS f WHERE ${match.where} LIMIT 1)`,
    params: match.params,
  };
}

/**
 * Like the built-in apply worker, TRUNCATE is applied without CASCADE: the
 * source already lists every published table its CASCADE reached, and tables
 * that exist only on the target are not ours to empty.
 */
export function truncateStatement(qualifiedNames: readonly string[], restartIdentity: boolean): Statement {
  return { text: `TRUNCATE ${qualifiedNames.join(', ')}${restartIdentity ? ' RESTART IDENTITY' : ''}`, params: [] };
}
