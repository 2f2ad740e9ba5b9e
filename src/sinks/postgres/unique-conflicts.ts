/**
 * update_exists and multiple_unique_conflicts (PostgreSQL 18's names,
 * https://www.postgresql.org/docs/18/logical-replication-conflicts.html): a
 * remote row whose new values meet *other* local rows on a unique index, or
 * meet local rows on more than one unique index (an INSERT meeting the row
 * with its own key counts that index too).
 *
 * The happy path is not touched. The plain statements run until the server
 * raises a unique violation (23505) for a table; the writer then raises
 * UniqueConflictReplay, the engine replays from the applied position (as it
 * does for a fold conflict), and from then on, until the process restarts,
 * that table is in *check mode*: its INSERT and UPDATE runs carry CTEs that
 * look up, for every immediate unique index on plain columns, the local rows
 * the run's new values meet (an index probe per row and index, in the same
 * statement: no round trip). Under the table's policy:
 *
 * - `error`: a statement sent before the run raises PTC01 (conflict_stop)
 *   with the kind, the key, and per index the local row's key; the batch
 *   rolls back and apply stops (apply-failure.ts formats it).
 * - `skip` (UPDATE): the run's UPDATE leaves the blocked rows out and logs one
 *   conflict_log row per local row met (conflict-statements.ts, UpdateGuard).
 *   An INSERT under skip already keeps the local rows (ON CONFLICT DO NOTHING).
 * - `apply_remote`: a statement sent before the run deletes the local rows
 *   that block it on unique indexes other than the key's and logs each one;
 *   the run then applies as usual (an INSERT's same-key row is overwritten by
 *   ON CONFLICT (key) and logged as insert_exists there).
 *
 * Local rows whose key the same UPDATE run rewrites are not counted: whether
 * they still block depends on the order PostgreSQL updates the run's rows in,
 * and when they do the server's 23505 stops apply as before. So do partial
 * and expression unique indexes, deferrable ones, and NULLS NOT DISTINCT
 * indexes meeting a NULL (a NULL never matches here).
 */
import type { TransactionInfo } from '../../changes/change.js';
import type { Tuple } from '../../protocol/messages.js';
import type { CatalogQuery, TargetTable } from './table-catalog.js';
import { textOf, updateByKeyParts, type KeyedUpdate, type Statement } from './statements.js';
import { quoteIdent, textArrayLiteral } from '../../core/sql.js';
import { PgtideError, fromServerError } from '../../core/errors.js';
import { LOG_COLUMNS, SOURCE_COLUMNS, commitTimeOf, jsonRow, literal, localCommit, sourceArrays, unnestAs, type LocalCommitInfo, type UpdateGuard } from './conflict-statements.js';
import type { ConflictKind, ConflictPolicy, ConflictResolution } from '../../apply/conflict-policy.js';
import { runColumns } from './update-run-columns.js';

/**
 * A unique violation on a table not yet in check mode: the batch is replayed
 * with the table checked index by index, so the conflict is named (error) or
 * resolved (skip, apply_remote) instead of stopping on the server's 23505.
 */
export class UniqueConflictReplay extends PgtideError {
  readonly table: string;
  constructor(table: string, cause: unknown) {
    super('APPLY_FAILED', `a unique violation on ${table}; replaying the batch with ${table} checked index by index (update_exists, multiple_unique_conflicts)`, { retryable: true, cause, sqlState: fromServerError(cause, 'target').sqlState });
    this.name = 'UniqueConflictReplay';
    this.table = table;
  }
}

/** An immediate unique index on plain columns of the target table (column positions as in TargetTable.columns). */
export interface UniqueIndex {
  readonly name: string;
  readonly columns: readonly number[];
}

const UNIQUE_INDEXES = `
  SELECT c.relname::text AS name,
         (SELECT json_agg(a.attname::text ORDER BY k.n)::text
            FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE k.n <= i.indnkeyatts) AS columns
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE i.indrelid = $1::text::regclass AND i.indisunique AND i.indimmediate AND i.indisvalid
     AND i.indpred IS NULL AND i.indexprs IS NULL
   ORDER BY c.relname`;

type Operation = 'insert' | 'update';

/** How a run's rows are laid out in `v` (unnestAs): what each column's new value and the row's own key are. */
interface Shape {
  readonly table: TargetTable;
  readonly operation: Operation;
  /** Typed expression of column i's new value over `v`, or of the own local row `o` (UPDATE, a column the change does not carry). */
  readonly newValue: (i: number) => string;
  /** Typed expression of the own key's p-th column over `alias`. */
  readonly ownKey: (p: number, alias: string) => string;
  /** Text expression of column i's new value as the change carries it, over `alias`; undefined when not carried. */
  readonly carried: (i: number, alias: string) => string | undefined;
  readonly arrays: (string | null)[][];
}

function insertShape(table: TargetTable, rows: readonly Tuple[]): Shape {
  const n = table.columns.length;
  const keys = table.relation.keyIndexes;
  const arrays: (string | null)[][] = Array.from({ length: n }, () => new Array<string | null>(rows.length));
  for (let r = 0; r < rows.length; r++) for (let c = 0; c < n; c++) arrays[c]![r] = textOf(rows[r]![c], table, c);
  const typed = (expr: string, i: number): string => `${expr}::${table.columns[i]!.sqlType}`;
  return {
    table, operation: 'insert', arrays,
    newValue: (i) => typed(`v.c${i}`, i),
    ownKey: (p, alias) => typed(`${alias}.c${keys[p]!}`, keys[p]!),
    carried: (i, alias) => `${alias}.c${i}`,
  };
}

function updateShape(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[]): Shape {
  const keys = table.relation.keyIndexes;
  const typed = (expr: string, i: number): string => `${expr}::${table.columns[i]!.sqlType}`;
  const { carried } = runColumns(table, setColumns);
  return {
    table, operation: 'update', arrays: updateByKeyParts(table, setColumns, rows).arrays,
    newValue: (i) => {
      const value = carried(i, 'v');
      return value !== undefined ? typed(value, i) : `o.${quoteIdent(table.columns[i]!.name)}`;
    },
    ownKey: (p, alias) => typed(`${alias}.c${p}`, keys[p]!),
    carried,
  };
}

const colName = (table: TargetTable, i: number): string => quoteIdent(table.columns[i]!.name);

/**
 * The CTEs `uq_n` (the run's rows with their new values typed, `v.*` kept),
 * `uq_b` (one row per local row met per index: the index, the local row's
 * key as b0…, its key as JSON, the row, its last writer, whether it is the
 * row's own (INSERT, same key), a "Key (…)=(…) already exists" text) and
 * `uq_c` (indexes met per run row). They need `v` with `ord`.
 */
function findCtes(shape: Shape, indexes: readonly UniqueIndex[], local: LocalCommitInfo): string {
  const { table } = shape;
  const name = table.relation.qualifiedName;
  const keys = table.relation.keyIndexes;
  const used = [...new Set(indexes.flatMap((index) => index.columns))].sort((a, b) => a - b);
  const needsOwnRow = used.some((i) => shape.newValue(i).startsWith('o.'));
  const ownJoin = needsOwnRow ? ` LEFT JOIN ${name} AS o ON ${keys.map((col, p) => `o.${colName(table, col)} = ${shape.ownKey(p, 'v')}`).join(' AND ')}` : '';
  const n = `uq_n AS MATERIALIZED (SELECT v.*, ${[...keys.map((_, p) => `${shape.ownKey(p, 'v')} AS ok${p}`), ...used.map((i) => `${shape.newValue(i)} AS n${i}`)].join(', ')}
      FROM v${ownJoin})`;
  const commit = localCommit(local);
  const lkey = jsonRow(keys.map((i) => table.columns[i]!.name), keys.map((i) => `t.${colName(table, i)}::text`));
  const own = shape.operation === 'insert' ? `(${keys.map((col, p) => `t.${colName(table, col)} = uq_n.ok${p}`).join(' AND ')})` : 'false';
  // UPDATE: not the row itself, nor any row this run rewrites (see the file comment). NOT IN is
  // a hashed subplan, which the apply session's enable_hashjoin = off does not touch (keys are NOT NULL).
  const exclusion = shape.operation === 'update'
    ? `WHERE (${keys.map((col) => `t.${colName(table, col)}`).join(', ')}) NOT IN (SELECT ${keys.map((_, p) => shape.ownKey(p, 'w')).join(', ')} FROM v AS w)`
    : '';
  const branches = indexes.map((index) => {
    const match = index.columns.map((i) => `t.${colName(table, i)} = uq_n.n${i}`).join(' AND ');
    const what = `${literal(`Key (${index.columns.map((i) => table.columns[i]!.name).join(', ')})=(`)} || concat_ws(', ', ${index.columns.map((i) => `t.${colName(table, i)}::text`).join(', ')}) || ') already exists'`;
    return `SELECT uq_n.ord, ${literal(index.name)}::text AS idx, ${keys.map((col, p) => `t.${colName(table, col)} AS b${p}`).join(', ')},
             ${lkey} AS lkey, to_jsonb(t) AS lrow, ${commit.origin} AS lorigin, ${commit.time} AS ltime, ${own} AS own, ${what} AS what
        FROM uq_n JOIN ${name} AS t ON ${match}${commit.join}
       ${exclusion}`;
  });
  return `${n},
    uq_b AS MATERIALIZED (${branches.join('\n      UNION ALL ')}),
    uq_c AS (SELECT ord, count(DISTINCT idx) AS met FROM uq_b GROUP BY ord)`;
}

function kindCase(operation: Operation): string {
  const single: ConflictKind = operation === 'insert' ? 'insert_exists' : 'update_exists';
  return `CASE WHEN uq_c.met > 1 THEN 'multiple_unique_conflicts' ELSE ${literal(single)} END`;
}

/** The remote row's key, old key and new row as JSON over `alias` (a row of uq_n). */
function remoteJson(shape: Shape, alias: string): { readonly key: string; readonly old: string; readonly next: string } {
  const { table } = shape;
  const keys = table.relation.keyIndexes;
  const key = jsonRow(keys.map((i) => table.columns[i]!.name), keys.map((i, p) => (shape.operation === 'insert' ? `${alias}.c${i}` : `${alias}.c${p}`)));
  const present = table.columns.map((_, i) => i).filter((i) => shape.carried(i, alias) !== undefined);
  const next = jsonRow(present.map((i) => table.columns[i]!.name), present.map((i) => shape.carried(i, alias)!));
  return { key, old: shape.operation === 'update' ? key : 'NULL', next };
}

/** One conflict_log row per local row met on an index (not the own row), from the CTEs of findCtes. */
function logBlockers(shape: Shape, resolution: ConflictResolution, subscriptionParam: number): string {
  const remote = remoteJson(shape, 'n');
  return `INSERT INTO pgtide.conflict_log (${LOG_COLUMNS}, index_name)
    SELECT $${subscriptionParam}::text, ${kindCase(shape.operation)}, ${literal(resolution)}, ${literal(shape.table.relation.qualifiedName)},
           ${remote.key}, ${remote.old}, ${remote.next}, pgtide.conflict_value(uq_b.lrow), uq_b.lorigin, uq_b.ltime,
           n.sx::bigint, n.sl::pg_lsn, ${commitTimeOf('n')}, n.so, uq_b.idx
      FROM uq_b JOIN uq_n AS n ON n.ord = uq_b.ord JOIN uq_c ON uq_c.ord = uq_b.ord
     WHERE NOT uq_b.own
    RETURNING kind, resolution`;
}

/** error: raises PTC01 for a run row that meets any local row on a unique index (the first one PostgreSQL finds). */
function stopStatement(shape: Shape, indexes: readonly UniqueIndex[]): Statement {
  const remote = remoteJson(shape, 'n');
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(shape.arrays.length, [], true)}),
      ${findCtes(shape, indexes, 'none')}
    SELECT pgtide.conflict_stop(${kindCase(shape.operation)}, ${literal(shape.table.relation.qualifiedName)},
             jsonb_build_object('key', ${remote.key}, 'conflicts',
               (SELECT jsonb_agg(jsonb_build_object('index', b.idx, 'local_key', b.lkey, 'what', b.what) ORDER BY b.idx) FROM uq_b AS b WHERE b.ord = n.ord)))
      FROM uq_n AS n JOIN uq_c ON uq_c.ord = n.ord
     ORDER BY n.ord LIMIT 1`,
    params: shape.arrays.map(textArrayLiteral),
  };
}

/** apply_remote: deletes the local rows that block the run on other unique indexes, logging each. */
function removeStatement(shape: Shape, indexes: readonly UniqueIndex[], sources: readonly TransactionInfo[], subscription: string, local: LocalCommitInfo): Statement {
  const { table } = shape;
  const keys = table.relation.keyIndexes;
  const params = [...shape.arrays.map(textArrayLiteral), ...sourceArrays(sources), subscription];
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(shape.arrays.length, SOURCE_COLUMNS, true)}),
      ${findCtes(shape, indexes, local)},
      uq_d AS (DELETE FROM ${table.relation.qualifiedName} AS t
                USING (SELECT DISTINCT ${keys.map((_, p) => `b${p}`).join(', ')} FROM uq_b WHERE NOT uq_b.own) AS x
                WHERE ${keys.map((col, p) => `t.${colName(table, col)} = x.b${p}`).join(' AND ')})
    ${logBlockers(shape, 'apply_remote', params.length)}`,
    params,
  };
}

/**
 * The tables in check mode (the engine's set, filled by UniqueConflictReplay)
 * and their unique indexes, read once per table definition.
 */
/**
 * Policies without a resolution of their own for a row met on another unique
 * index: the time-based ones would have to compare the blocking local row's
 * time, which they do not yet; a custom resolver is not offered these kinds.
 * They stop, as `error` does, rather than guess.
 */
function stopsOnUnique(policy: ConflictPolicy): boolean {
  return policy !== 'skip' && policy !== 'apply_remote';
}

export class UniqueChecks {
  readonly #tables: ReadonlySet<string>;
  readonly #subscription: string;
  readonly #local: LocalCommitInfo;
  readonly #indexes = new WeakMap<TargetTable, readonly UniqueIndex[]>();

  constructor(tables: ReadonlySet<string> | undefined, subscription: string, local: LocalCommitInfo) {
    this.#tables = tables ?? new Set();
    this.#subscription = subscription;
    this.#local = local;
  }

  /** Whether a 23505 on `table` should replay in check mode rather than stop: not yet checked. */
  replays(table: string): boolean {
    return !this.#tables.has(table);
  }

  /** Keyed tables only: the checks address local rows by key. */
  checks(table: TargetTable): boolean {
    const { relation } = table;
    return this.#tables.has(relation.qualifiedName) && relation.replicaIdentity !== 'full' && relation.keyIndexes.length > 0 && table.facts.keyUnique;
  }

  async load(table: TargetTable, query: CatalogQuery): Promise<void> {
    if (!this.checks(table) || this.#indexes.has(table)) return;
    const rows = await query(UNIQUE_INDEXES, [table.relation.qualifiedName]) as readonly { name: string; columns: string }[];
    const indexes: UniqueIndex[] = [];
    for (const row of rows) {
      const columns = (JSON.parse(row.columns) as string[]).map((name) => table.columns.findIndex((c) => c.name === name));
      // A column the source does not send (target-only) has no new value to compare.
      if (columns.length > 0 && columns.every((i) => i >= 0)) indexes.push({ name: row.name, columns });
    }
    this.#indexes.set(table, indexes);
  }

  #indexesOf(table: TargetTable): readonly UniqueIndex[] {
    if (!this.checks(table)) return [];
    return this.#indexes.get(table) ?? [];
  }

  /** Sent before an INSERT run: error stops on any unique index met, apply_remote removes the rows met on other indexes. */
  beforeInsert(table: TargetTable, rows: readonly Tuple[], sources: readonly TransactionInfo[], policy: ConflictPolicy): Statement | undefined {
    const indexes = this.#indexesOf(table);
    if (indexes.length === 0 || policy === 'skip') return undefined;
    const shape = insertShape(table, rows);
    if (stopsOnUnique(policy)) return stopStatement(shape, indexes);
    return sources.length === rows.length ? removeStatement(shape, indexes, sources, this.#subscription, this.#local) : undefined;
  }

  /**
   * An UPDATE can meet another row only on an index with a column it sets: on
   * any other (the key's, when the key stays) its new values are its own row's.
   */
  #updateIndexes(table: TargetTable, setColumns: readonly number[]): readonly UniqueIndex[] {
    return this.#indexesOf(table).filter((index) => index.columns.some((i) => setColumns.includes(i)));
  }

  /** Sent before an UPDATE run (skip resolves inside the run's statement: skipGuard). */
  beforeUpdate(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[], sources: readonly TransactionInfo[], policy: ConflictPolicy): Statement | undefined {
    const indexes = this.#updateIndexes(table, setColumns);
    if (indexes.length === 0 || policy === 'skip') return undefined;
    const shape = updateShape(table, setColumns, rows);
    if (stopsOnUnique(policy)) return stopStatement(shape, indexes);
    return sources.length === rows.length ? removeStatement(shape, indexes, sources, this.#subscription, this.#local) : undefined;
  }

  /** skip: the CTEs that keep the blocked rows out of the run's UPDATE and log them (conflict-statements.ts, updateLogged). */
  skipGuard(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[], policy: ConflictPolicy): UpdateGuard | undefined {
    const indexes = this.#updateIndexes(table, setColumns);
    if (indexes.length === 0 || policy !== 'skip') return undefined;
    const shape = updateShape(table, setColumns, rows);
    // updateLogged's parameters: the arrays, the four source arrays, then the subscription.
    const subscriptionParam = shape.arrays.length + SOURCE_COLUMNS.length + 1;
    return {
      ctes: `${findCtes(shape, indexes, this.#local)},
      uq_l AS (${logBlockers(shape, 'skip', subscriptionParam)})`,
      keep: 'v.ord NOT IN (SELECT uq_b.ord FROM uq_b)',
      logged: ['uq_l'],
    };
  }
}

/** The stop of a unique conflict, worded as the server's 23505 (the statement that first met it raised one) plus what pgtide found. */
export interface UniqueStop {
  readonly message: string;
  readonly detail: string;
}

interface StopDetail {
  readonly key?: unknown;
  readonly conflicts?: readonly { readonly index?: string; readonly local_key?: unknown; readonly what?: string }[];
}

/**
 * The stop of a unique conflict under `error`, from conflict_stop's DETAIL
 * (JSON: the remote key and, per index met, the local row's key), or
 * undefined when `kind` is not one of these.
 */
export function uniqueStop(kind: string, detail: string | undefined): UniqueStop | undefined {
  if (kind !== 'insert_exists' && kind !== 'update_exists' && kind !== 'multiple_unique_conflicts') return undefined;
  let parsed: StopDetail;
  try {
    parsed = JSON.parse(detail ?? '') as StopDetail;
  } catch {
    return undefined;
  }
  const conflicts = parsed.conflicts ?? [];
  if (conflicts.length === 0) return undefined;
  const serverDetail = conflicts.map((c) => `${c.what ?? 'Key already exists'}.`).join(' ');
  const held = conflicts.map((c) => `${c.index ?? '?'} holds local row ${JSON.stringify(c.local_key)}`).join(', ');
  const what = kind === 'update_exists' ? 'The UPDATE\'s new values meet another local row on a unique index'
    : kind === 'insert_exists' ? 'The INSERT meets a local row on a unique index'
      : 'The row meets local rows on more than one unique index';
  return {
    message: `duplicate key value violates unique constraint "${conflicts[0]!.index ?? '?'}" (SQLSTATE 23505). DETAIL: ${serverDetail} ${what}: ${held}; remote key ${JSON.stringify(parsed.key)}. The conflict policy for this table is error, so pgtide stops: remove or change the local row(s) on the target, or set conflicts.policy (or conflicts.tables) to skip (keep the local rows, drop the change) or apply_remote (remove the local rows that block it), then start pgtide again (see docs/conflicts.md).`,
    detail: serverDetail,
  };
}
