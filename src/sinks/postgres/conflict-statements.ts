/**
 * Set-based statements that detect conflicts and carry out the table's
 * policy in the same statement (docs/conflicts.md). No round trip is added:
 * the statement that applies a run also finds the rows that conflicted,
 * resolves them and writes them to `pgtide.conflict_log`, in the batch's
 * transaction, so a conflict is logged exactly when its resolution commits.
 *
 * How each kind is found, without a per-row query:
 * - update_missing / delete_missing: the UPDATE/DELETE returns a row per input
 *   row it matched, and a one-time filter (an init plan) compares their count
 *   with the input's. Only when it falls short are the missing rows looked
 *   for: under `error` the first key with no row in the statement's snapshot;
 *   under skip/apply_remote the input rows whose ordinal the statement did not
 *   return (`NOT IN (subquery)` is a hashed subplan, which the apply session's
 *   `enable_hashjoin = off` does not touch).
 * - insert_exists (skip, apply_remote): the existing rows are read by key
 *   before the INSERT (an index probe per row; every sub-statement of one
 *   statement sees the same snapshot, so the local rows are the ones the
 *   INSERT meets), and the INSERT runs with `ON CONFLICT (key)`.
 * - insert_exists under `error`, update_exists and multiple_unique_conflicts:
 *   the server's unique violation (23505) stops apply (apply-failure.ts).
 *
 * Under `error`, a missing row calls `pgtide.conflict_stop`, which raises
 * SQLSTATE PTC01 with the kind and key: the batch rolls back and nothing is
 * logged. These statements carry no per-row source columns, so they also
 * serve net-effect folded runs; skip and apply_remote carry each row's source
 * transaction (xid, commit LSN, commit time, origin) for the log, so their
 * tables are applied unfolded.
 */
import type { TransactionInfo } from '../../changes/change.js';
import type { Tuple } from '../../protocol/messages.js';
import type { TargetTable } from './table-catalog.js';
import { textOf, updateByKeyParts, type KeyedUpdate, type Statement } from './statements.js';
import type { CountedStatement } from './net-effect.js';
import { quoteIdent, textArrayLiteral } from '../../core/sql.js';
import { formatLsn } from '../../core/lsn.js';
import type { ConflictKind, ConflictResolution } from '../../apply/conflict-policy.js';
import { runColumns } from './update-run-columns.js';

/** What the target can say about a local row's last writer (track_commit_timestamp, PostgreSQL 16+ for the origin). */
export type LocalCommitInfo = 'none' | 'time' | 'origin';

/** A statement that writes conflict_log rows returns one (kind, resolution) row per conflict. */
export interface ConflictStatement extends Statement {
  readonly logs: boolean;
}

export interface ConflictRow { readonly kind: ConflictKind; readonly resolution: ConflictResolution }

/** The SQLSTATE `pgtide.conflict_stop` raises (state-schema.ts, migration 6). */
export const CONFLICT_STOP_SQLSTATE = 'PTC01';

export const LOG_COLUMNS = 'subscription, kind, resolution, table_name, key, remote_old, remote_new, local_row, local_origin, local_commit_time, source_xid, source_commit_lsn, source_commit_time, source_origin';
export const SOURCE_COLUMNS = ['sx', 'sl', 'st', 'so'] as const;
/** pgoutput's commit time is microseconds since 2000-01-01 UTC: kept exact, not rounded through a JS Date. */
export const commitTimeOf = (alias: string): string => `'2000-01-01 00:00:00+00'::timestamptz + ${alias}.st::bigint * interval '1 microsecond'`;

export const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;
export const nameOf = (table: TargetTable, i: number): string => quoteIdent(table.columns[i]!.name);
export const typeOf = (table: TargetTable, i: number): string => table.columns[i]!.sqlType;

/** A jsonb object of text values, marker-capped; ARRAY[] has no argument limit (jsonb_build_object has 100). */
export function jsonRow(names: readonly string[], expressions: readonly string[]): string {
  if (names.length === 0) return `'{}'::jsonb`;
  return `pgtide.conflict_value(jsonb_object(ARRAY[${names.map(literal).join(', ')}]::text[], ARRAY[${expressions.join(', ')}]::text[]))`;
}

export function keyJson(table: TargetTable, alias: string, arrayOfKeyColumn: (i: number) => number): string {
  const keys = table.relation.keyIndexes;
  return jsonRow(keys.map((i) => table.columns[i]!.name), keys.map((i) => `${alias}.c${arrayOfKeyColumn(i)}`));
}

/**
 * A transaction applied while it streams begins with commit time 0 (streamed-apply.ts): its
 * commit is not known yet. A streamed transaction buffered and replayed at its commit has both.
 */
const commitKnown = (s: TransactionInfo): boolean => !s.streamed || s.commitTime !== 0n;

/** Per-row source transaction arrays, aligned with the run's rows. */
export function sourceArrays(sources: readonly TransactionInfo[]): string[] {
  return [
    textArrayLiteral(sources.map((s) => String(s.xid))),
    textArrayLiteral(sources.map((s) => (commitKnown(s) ? formatLsn(s.commitLsn) : null))),
    textArrayLiteral(sources.map((s) => (commitKnown(s) ? String(s.commitTime) : null))),
    textArrayLiteral(sources.map((s) => s.origin ?? null)),
  ];
}

export function unnestAs(arrays: number, extra: readonly string[], ordinality: boolean, alias = 'v'): string {
  const params: string[] = [];
  const names: string[] = [];
  for (let i = 0; i < arrays; i++) {
    params.push(`$${i + 1}::text[]`);
    names.push(`c${i}`);
  }
  extra.forEach((name, i) => {
    params.push(`$${arrays + i + 1}::text[]`);
    names.push(name);
  });
  return `unnest(${params.join(', ')})${ordinality ? ' WITH ORDINALITY' : ''} AS ${alias}(${[...names, ...(ordinality ? ['ord'] : [])].join(', ')})`;
}

function logInsert(options: {
  readonly kind: ConflictKind; readonly resolution: ConflictResolution; readonly table: TargetTable; readonly from: string; readonly alias: string;
  readonly subscriptionParam: number; readonly key: string; readonly remoteOld: string; readonly remoteNew: string;
  readonly localRow: string; readonly localOrigin: string; readonly localTime: string;
}): string {
  const a = options.alias;
  return `INSERT INTO pgtide.conflict_log (${LOG_COLUMNS})
    SELECT $${options.subscriptionParam}::text, ${literal(options.kind)}, ${literal(options.resolution)}, ${literal(options.table.relation.qualifiedName)},
           ${options.key}, ${options.remoteOld}, ${options.remoteNew}, ${options.localRow}, ${options.localOrigin}, ${options.localTime},
           ${a}.sx::bigint, ${a}.sl::pg_lsn, ${commitTimeOf(a)}, ${a}.so
      FROM ${options.from}
    RETURNING kind, resolution`;
}

/** Rows of `v` whose ordinal the data-modifying CTE `changed` did not return. */
function missingRows(changed: string): string {
  return `SELECT v.* FROM v WHERE (SELECT count(*) FROM ${changed}) < (SELECT count(*) FROM v) AND v.ord NOT IN (SELECT ${changed}.ord FROM ${changed})`;
}

/** Keyed statements can be checked per key only where the target has a unique index on the key. */
export function keyedCheckable(table: TargetTable): boolean {
  return table.relation.keyIndexes.length > 0 && table.facts.keyUnique;
}

// ---------------------------------------------------------------------------------------------
// error: stop at the first missing row (usable for folded runs: no per-row source columns)
// ---------------------------------------------------------------------------------------------

/**
 * The happy path of `error` is the default for every table, so it stays lean:
 * the input arrays are unnested straight into the UPDATE/DELETE as before, it
 * returns a constant per matched row, and a one-time filter compares their
 * count with the number of keys. Only when it falls short is the first
 * missing key looked up: a key with no row in the statement's snapshot (the
 * rows the UPDATE/DELETE could match) — an index probe per key, on the stop
 * path only.
 */
function stopOnMissing(kind: 'update_missing' | 'delete_missing', table: TargetTable, changed: string, tombstones = false): string {
  const keyIndexes = table.relation.keyIndexes;
  const k = keyIndexes.length;
  const key = jsonRow(keyIndexes.map((i) => table.columns[i]!.name), keyIndexes.map((_, i) => `m.c${i}`));
  const absent = keyIndexes.map((col, i) => `t.${nameOf(table, col)} = m.c${i}::${typeOf(table, col)}`).join(' AND ');
  const missingKey = `(SELECT ${key} FROM ${unnestAs(k, [], false, 'm')} WHERE NOT EXISTS (SELECT 1 FROM ${table.relation.qualifiedName} AS t WHERE ${absent}) LIMIT 1)`;
  // With tombstones (tombstones.ts), a missing row that an applied DELETE removed is update_deleted.
  const kindSql = tombstones
    ? `CASE WHEN EXISTS (SELECT 1 FROM pgtide.tombstone AS ts WHERE ts.table_name = ${literal(table.relation.qualifiedName)} AND ts.key = ${missingKey}) THEN 'update_deleted' ELSE ${literal(kind)} END`
    : literal(kind);
  return `WITH u AS (${changed})
    SELECT pgtide.conflict_stop(${kindSql}, ${literal(table.relation.qualifiedName)}, ${missingKey})
     WHERE (SELECT count(*) FROM u) < cardinality($1::text[])`;
}

/** A keyed DELETE that stops with PTC01 on a missing row; undefined when the table cannot be checked per key. */
export function deleteOrStop(table: TargetTable, keys: readonly (readonly string[])[]): CountedStatement | undefined {
  if (!keyedCheckable(table)) return undefined;
  const keyIndexes = table.relation.keyIndexes;
  const arrays = keyIndexes.map((_, i) => textArrayLiteral(keys.map((key) => key[i]!)));
  const where = keyIndexes.map((col, i) => `t.${nameOf(table, col)} = v.c${i}::${typeOf(table, col)}`).join(' AND ');
  return {
    statement: {
      text: stopOnMissing('delete_missing', table, `DELETE FROM ${table.relation.qualifiedName} AS t USING ${unnestAs(arrays.length, [], false)} WHERE ${where} RETURNING 1`),
      params: arrays,
    },
    expectedRows: 0,
    operation: 'DELETE',
  };
}

/** A keyed UPDATE that stops with PTC01 on a missing row; undefined where it cannot be checked per key or must move rows. */
export function updateOrStop(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[], tombstones = false): CountedStatement | undefined {
  if (!keyedCheckable(table) || setColumns.some((i) => table.columns[i]!.identityAlways)) return undefined;
  const { set, where, arrays } = updateByKeyParts(table, setColumns, rows);
  return {
    statement: {
      text: stopOnMissing('update_missing', table, `UPDATE ${table.relation.qualifiedName} AS t SET ${set} FROM ${unnestAs(arrays.length, [], false)} WHERE ${where} RETURNING 1`, tombstones),
      params: arrays.map(textArrayLiteral),
    },
    expectedRows: 0,
    operation: 'UPDATE',
  };
}

// ---------------------------------------------------------------------------------------------
// skip / apply_remote: resolve and log
// ---------------------------------------------------------------------------------------------

/** The log row of an INSERT whose key a local row holds: read from CTE `l` (the remote row as c0…, the local row as lrow, lorigin, ltime). */
function insertExistsLog(table: TargetTable, resolution: ConflictResolution, subscriptionParam: number): string {
  return logInsert({
    kind: 'insert_exists', resolution, table, from: 'l', alias: 'l', subscriptionParam,
    key: keyJson(table, 'l', (i) => i), remoteOld: 'NULL',
    remoteNew: jsonRow(table.columns.map((c) => c.name), table.columns.map((_, i) => `l.c${i}`)),
    localRow: 'pgtide.conflict_value(l.lrow)', localOrigin: 'l.lorigin', localTime: 'l.ltime',
  });
}

export interface LoggedRunOptions {
  readonly resolution: 'skip' | 'apply_remote';
  readonly subscription: string;
  readonly local: LocalCommitInfo;
}

export function deleteLogged(table: TargetTable, keys: readonly (readonly string[])[], sources: readonly TransactionInfo[], options: LoggedRunOptions): ConflictStatement | undefined {
  if (!keyedCheckable(table)) return undefined;
  const keyIndexes = table.relation.keyIndexes;
  const arrays = keyIndexes.map((_, i) => textArrayLiteral(keys.map((key) => key[i]!)));
  const params = [...arrays, ...sourceArrays(sources), options.subscription];
  const where = keyIndexes.map((col, i) => `t.${nameOf(table, col)} = v.c${i}::${typeOf(table, col)}`).join(' AND ');
  const name = table.relation.qualifiedName;
  const key = keyJson(table, 'm', (i) => keyIndexes.indexOf(i));
  // Under apply_remote the remote DELETE's outcome (no row) already holds: nothing to write but the log.
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(arrays.length, SOURCE_COLUMNS, true)}),
      d AS (DELETE FROM ${name} AS t USING v WHERE ${where} RETURNING v.ord),
      m AS (${missingRows('d')})
      ${logInsert({ kind: 'delete_missing', resolution: options.resolution, table, from: 'm', alias: 'm', subscriptionParam: params.length, key, remoteOld: key, remoteNew: 'NULL', localRow: 'NULL', localOrigin: 'NULL', localTime: 'NULL' })}`,
    params,
    logs: true,
  };
}

/**
 * Other conflict kinds an UPDATE run resolves in its own statement, beside update_missing:
 * update_exists / multiple_unique_conflicts under skip (unique-conflicts.ts) and update_deleted
 * (tombstones.ts). Their CTEs log what they resolve and name the rows the run leaves alone.
 */
export interface UpdateGuard {
  /** CTE definitions placed right after `v` (no leading comma). */
  readonly ctes?: string;
  /** A condition on `v`: true for the rows the UPDATE may apply (and look for when missing). */
  readonly keep?: string;
  /** CTE definitions placed after `u` (the ords the UPDATE matched), before the missing rows `m`. */
  readonly missingCtes?: string;
  /** A condition on `v`: true for the missing rows that are update_missing. */
  readonly missingKeep?: string;
  /** CTEs that logged conflicts (RETURNING kind, resolution). */
  readonly logged: readonly string[];
}

/** Both guards' CTEs and conditions; their log rows are returned together. */
export function combineGuards(a: UpdateGuard | undefined, b: UpdateGuard | undefined): UpdateGuard | undefined {
  if (!a || !b) return a ?? b;
  const join = (x: string | undefined, y: string | undefined, by: string): string | undefined => (x && y ? `${x}${by}${y}` : x ?? y);
  const ctes = join(a.ctes, b.ctes, ',\n      ');
  const keep = join(a.keep, b.keep, ' AND ');
  const missingCtes = join(a.missingCtes, b.missingCtes, ',\n      ');
  const missingKeep = join(a.missingKeep, b.missingKeep, ' AND ');
  return { ...(ctes ? { ctes } : {}), ...(keep ? { keep } : {}), ...(missingCtes ? { missingCtes } : {}), ...(missingKeep ? { missingKeep } : {}), logged: [...a.logged, ...b.logged] };
}

export function updateLogged(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[], sources: readonly TransactionInfo[], options: LoggedRunOptions, guard?: UpdateGuard): ConflictStatement | undefined {
  if (!keyedCheckable(table) || setColumns.some((i) => table.columns[i]!.identityAlways)) return undefined;
  const { set, where, arrays } = updateByKeyParts(table, setColumns, rows);
  const params = [...arrays.map(textArrayLiteral), ...sourceArrays(sources), options.subscription];
  const keyIndexes = table.relation.keyIndexes;
  const name = table.relation.qualifiedName;
  // The new row's values as the run carries them: SET columns, and key columns that did not change.
  const { carried, present, complete } = runColumns(table, setColumns);
  const valueOf = (i: number): string | undefined => carried(i, 'm');
  const remoteNew = jsonRow(present.map((i) => table.columns[i]!.name), present.map((i) => valueOf(i)!));
  const key = keyJson(table, 'm', (i) => keyIndexes.indexOf(i));
  // apply_remote inserts the missing row only when the change carries every column (no unchanged
  // TOAST value, which only the missing row held); otherwise the row is logged and skipped.
  const resolution: ConflictResolution = options.resolution === 'apply_remote' && complete ? 'apply_remote' : 'skip';
  const insert = resolution === 'apply_remote' ? insertCarried(table, valueOf, 'm') : '';
  const missingLog = logInsert({ kind: 'update_missing', resolution, table, from: 'm', alias: 'm', subscriptionParam: params.length, key, remoteOld: key, remoteNew, localRow: 'NULL', localOrigin: 'NULL', localTime: 'NULL' });
  const keep = guard?.keep ? ` AND ${guard.keep}` : '';
  const missingKeep = guard?.missingKeep ? ` AND ${guard.missingKeep}` : '';
  const logged = guard?.logged.length
    ? `, lm AS (${missingLog}) SELECT kind, resolution FROM lm${guard.logged.map((cte) => ` UNION ALL SELECT kind, resolution FROM ${cte}`).join('')}`
    : missingLog;
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(arrays.length, SOURCE_COLUMNS, true)}),${guard?.ctes ? `\n      ${guard.ctes},` : ''}
      u AS (UPDATE ${name} AS t SET ${set} FROM v WHERE ${where}${keep} RETURNING v.ord),${guard?.missingCtes ? `\n      ${guard.missingCtes},` : ''}
      m AS MATERIALIZED (${missingRows('u')}${keep}${missingKeep})${insert}
      ${logged}`,
    params,
    logs: true,
  };
}

/**
 * apply_remote for an UPDATE run's missing rows: the CTE `i` (after a comma) inserting each row
 * of `from` as the run carries it; only for a run that carries every column (RunColumns.complete).
 */
export function insertCarried(table: TargetTable, valueOf: (i: number) => string | undefined, from: string): string {
  return `, i AS (INSERT INTO ${table.relation.qualifiedName} (${table.columns.map((_, i) => nameOf(table, i)).join(', ')}) OVERRIDING SYSTEM VALUE
              SELECT ${table.columns.map((_, i) => `${valueOf(i)!}::${typeOf(table, i)}`).join(', ')} FROM ${from})`;
}

/** The local row's last writer, from the row's xmin (NULL for a row of this very batch: not committed yet). */
export function localCommit(local: LocalCommitInfo): { readonly join: string; readonly origin: string; readonly time: string } {
  switch (local) {
    case 'none': return { join: '', origin: 'NULL::text', time: 'NULL::timestamptz' };
    case 'time': return { join: '', origin: 'NULL::text', time: 'pg_xact_commit_timestamp(t.xmin)' };
    case 'origin': return {
      join: ' LEFT JOIN LATERAL pg_xact_commit_timestamp_origin(t.xmin) AS lc ON true',
      origin: '(SELECT o.roname FROM pg_replication_origin o WHERE o.roident = lc.roident)',
      time: 'lc."timestamp"',
    };
  }
}

/**
 * INSERT … ON CONFLICT (key): skip keeps the local row (DO NOTHING), apply_remote
 * overwrites it (DO UPDATE of every non-key column an UPDATE may assign).
 * Needs a unique index on exactly the key, which ON CONFLICT infers; a
 * violation of any other unique index still raises 23505 and stops apply.
 */
export function insertLogged(table: TargetTable, rows: readonly Tuple[], sources: readonly TransactionInfo[], options: LoggedRunOptions): ConflictStatement | undefined {
  const n = table.columns.length;
  const keyIndexes = table.relation.keyIndexes;
  if (n === 0 || keyIndexes.length === 0 || (options.resolution === 'apply_remote' && !table.facts.keyIndexExact)) return undefined;
  const columns: (string | null)[][] = Array.from({ length: n }, () => new Array<string | null>(rows.length));
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    for (let c = 0; c < n; c++) columns[c]![r] = textOf(row[c], table, c);
  }
  const params = [...columns.map(textArrayLiteral), ...sourceArrays(sources), options.subscription];
  const name = table.relation.qualifiedName;
  const names = table.columns.map((_, i) => nameOf(table, i));
  const casts = table.columns.map((_, i) => `v.c${i}::${typeOf(table, i)}`).join(', ');
  const match = keyIndexes.map((i) => `t.${nameOf(table, i)} = v.c${i}::${typeOf(table, i)}`).join(' AND ');
  const overwrite = table.columns.map((_, i) => i).filter((i) => !keyIndexes.includes(i) && !table.columns[i]!.identityAlways);
  const onConflict = options.resolution === 'apply_remote' && overwrite.length > 0
    ? `DO UPDATE SET ${overwrite.map((i) => `${names[i]} = EXCLUDED.${names[i]}`).join(', ')}`
    : 'DO NOTHING';
  const local = localCommit(options.local);
  if (options.resolution === 'skip') return insertSkipping(table, params, local);
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(n, SOURCE_COLUMNS, false)}),
      l AS MATERIALIZED (SELECT v.*, to_jsonb(t) AS lrow, ${local.origin} AS lorigin, ${local.time} AS ltime
                           FROM v JOIN ${name} AS t ON ${match}${local.join}),
      i AS (INSERT INTO ${name} (${names.join(', ')}) OVERRIDING SYSTEM VALUE SELECT ${casts} FROM v
            ON CONFLICT (${keyIndexes.map((i) => names[i]).join(', ')}) ${onConflict})
      ${insertExistsLog(table, options.resolution, params.length)}`,
    params,
    logs: true,
  };
}

/**
 * skip: `ON CONFLICT DO NOTHING` with no arbiter keeps the local row whatever
 * unique index the remote row meets (the key's, or another: PostgreSQL 18
 * calls both insert_exists). The INSERT returns the keys it wrote; the input
 * rows whose key it did not return are the conflicts (a hashed `NOT IN`, run
 * only when the count falls short), and only they are looked up by key for
 * the log (no local row there: the conflict was on another unique index).
 */
function insertSkipping(table: TargetTable, params: readonly (string | null)[], local: ReturnType<typeof localCommit>): ConflictStatement {
  const n = table.columns.length;
  const keyIndexes = table.relation.keyIndexes;
  const name = table.relation.qualifiedName;
  const names = table.columns.map((_, i) => nameOf(table, i));
  const casts = table.columns.map((_, i) => `v.c${i}::${typeOf(table, i)}`).join(', ');
  const keyNames = keyIndexes.map((i) => names[i]).join(', ');
  const typedKey = keyIndexes.map((i) => `v.c${i}::${typeOf(table, i)}`).join(', ');
  const match = keyIndexes.map((i) => `t.${nameOf(table, i)} = s.c${i}::${typeOf(table, i)}`).join(' AND ');
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(n, SOURCE_COLUMNS, false)}),
      i AS (INSERT INTO ${name} (${names.join(', ')}) OVERRIDING SYSTEM VALUE SELECT ${casts} FROM v ON CONFLICT DO NOTHING RETURNING ${keyNames}),
      s AS MATERIALIZED (SELECT v.* FROM v WHERE (SELECT count(*) FROM i) < (SELECT count(*) FROM v) AND (${typedKey}) NOT IN (SELECT ${keyNames} FROM i)),
      l AS (SELECT s.*, to_jsonb(t) AS lrow, ${local.origin} AS lorigin, ${local.time} AS ltime
              FROM s LEFT JOIN ${name} AS t ON ${match}${local.join})
      ${insertExistsLog(table, 'skip', params.length)}`,
    params,
    logs: true,
  };
}

// ---------------------------------------------------------------------------------------------
// REPLICA IDENTITY FULL: one change per statement, the old row is the identity
// ---------------------------------------------------------------------------------------------

/** One UPDATE (newTuple set) or DELETE of a REPLICA IDENTITY FULL table, with its source transaction. */
export interface FullChange {
  readonly oldTuple: Tuple;
  readonly newTuple: Tuple | undefined;
  readonly source: TransactionInfo;
}

/** The row as a JSON object of text values; unchanged-TOAST columns are left out. */
function tupleJson(table: TargetTable, tuple: Tuple): string {
  const row: Record<string, string | null> = {};
  table.columns.forEach((column, i) => {
    const value = tuple[i];
    if (value && value.kind !== 'unchanged') row[column.name] = textOf(value, table, i);
  });
  return JSON.stringify(row);
}

/**
 * The FULL statement as a CTE that yields a row when it found its row. A row
 * move (WITH … DELETE … INSERT, for a GENERATED ALWAYS identity column) has a
 * WITH of its own, which PostgreSQL does not allow inside a CTE: undefined.
 */
export function fullBody(statement: Statement): string | undefined {
  if (statement.text.startsWith('UPDATE ') || statement.text.startsWith('DELETE ')) return `${statement.text} RETURNING 1`;
  if (statement.text.startsWith('SELECT ')) return statement.text;
  return undefined;
}

export function fullOrStop(table: TargetTable, counted: CountedStatement, change: FullChange): CountedStatement | undefined {
  const body = fullBody(counted.statement);
  if (!body) return undefined;
  const params = [...counted.statement.params, tupleJson(table, change.oldTuple)];
  const kind: ConflictKind = counted.operation === 'UPDATE' ? 'update_missing' : 'delete_missing';
  return {
    statement: {
      text: `WITH u AS (${body})
        SELECT pgtide.conflict_stop(${literal(kind)}, ${literal(table.relation.qualifiedName)}, pgtide.conflict_value($${params.length}::text::jsonb))
         WHERE NOT EXISTS (SELECT 1 FROM u)`,
      params,
    },
    expectedRows: 0,
    operation: counted.operation,
  };
}

export function fullLogged(table: TargetTable, counted: CountedStatement, change: FullChange, options: LoggedRunOptions): ConflictStatement | undefined {
  const body = fullBody(counted.statement);
  if (!body) return undefined;
  const params: (string | null)[] = [...counted.statement.params];
  const add = (value: string | null): string => {
    params.push(value);
    return `$${params.length}::text`;
  };
  const old = add(tupleJson(table, change.oldTuple));
  const next = change.newTuple;
  const kind: ConflictKind = next ? 'update_missing' : 'delete_missing';
  const complete = next !== undefined && table.columns.every((_, i) => next[i] !== undefined && next[i]!.kind !== 'unchanged');
  const resolution: ConflictResolution = kind === 'update_missing' && options.resolution === 'apply_remote' && !complete ? 'skip' : options.resolution;
  const name = table.relation.qualifiedName;
  const insert = kind === 'update_missing' && resolution === 'apply_remote' && next
    ? `, i AS (INSERT INTO ${name} (${table.columns.map((_, i) => nameOf(table, i)).join(', ')}) OVERRIDING SYSTEM VALUE
              SELECT ${table.columns.map((_, i) => `${add(textOf(next[i], table, i))}::${typeOf(table, i)}`).join(', ')} WHERE NOT EXISTS (SELECT 1 FROM u))`
    : '';
  const remoteNew = next ? `pgtide.conflict_value(${add(tupleJson(table, next))}::jsonb)` : 'NULL';
  const s = change.source;
  return {
    text: `WITH u AS (${body})${insert}
      INSERT INTO pgtide.conflict_log (${LOG_COLUMNS})
      SELECT ${add(options.subscription)}, ${literal(kind)}, ${literal(resolution)}, ${literal(name)},
             pgtide.conflict_value(${old}::jsonb), pgtide.conflict_value(${old}::jsonb), ${remoteNew}, NULL, NULL, NULL,
             ${add(String(s.xid))}::bigint, ${add(commitKnown(s) ? formatLsn(s.commitLsn) : null)}::pg_lsn,
             '2000-01-01 00:00:00+00'::timestamptz + ${add(commitKnown(s) ? String(s.commitTime) : null)}::bigint * interval '1 microsecond', ${add(s.origin ?? null)}
       WHERE NOT EXISTS (SELECT 1 FROM u)
      RETURNING kind, resolution`,
    params,
    logs: true,
  };
}
