/**
 * Set-based statements for tables whose policy compares the local row's last
 * writer with the remote change (docs/conflicts.md, "Time-based policies"):
 * last_update_wins, first_update_wins, and skip/apply_remote with
 * `conflicts.detectOriginDiffers`. The decision is apply/conflict-time.ts's
 * `remoteWins`, written in SQL by `remoteWinsSql`.
 *
 * Each statement reads the local rows of its keys once (an index probe per
 * row, in the statement's snapshot, which every sub-statement shares) with
 * their writer from `pg_xact_commit_timestamp_origin(xmin)` (PostgreSQL 14+;
 * needs track_commit_timestamp), then applies every row whose local row is
 * this edge's own, unknown, or loses, and logs each conflict, in the same
 * statement. Every row carries its own source transaction's commit time (the
 * run's `sources`), so two source transactions of one batch are judged each by
 * its own time; a row an earlier statement of the batch wrote has no commit
 * timestamp yet (its transaction is the batch's, still open) and is not a
 * conflict, exactly like a row of the same transaction in PostgreSQL.
 */
import type { TransactionInfo } from '../../changes/change.js';
import type { Tuple } from '../../protocol/messages.js';
import type { TargetTable } from './table-catalog.js';
import { textOf, updateByKeyParts, type KeyedUpdate } from './statements.js';
import { textArrayLiteral } from '../../core/sql.js';
import {
  LOG_COLUMNS, SOURCE_COLUMNS, commitTimeOf, jsonRow, keyJson, keyedCheckable, literal, nameOf, insertCarried, sourceArrays, typeOf, unnestAs,
  type ConflictStatement,
} from './conflict-statements.js';
import type { ConflictKind, ConflictPolicy } from '../../apply/conflict-policy.js';
import { runColumns } from './update-run-columns.js';
import { LOCAL_WRITER, UNLISTED_RANK, isTimePolicy, writerRank } from '../../apply/conflict-time.js';

export interface OriginCheckOptions {
  readonly policy: ConflictPolicy;
  readonly subscription: string;
  /** This edge's replication origin: rows it last wrote are not conflicts. */
  readonly originName: string;
  readonly nodeOrder: readonly string[] | undefined;
}

/**
 * SQL of `remoteWins` for timestamptz expressions (NULL: unknown) and integer ranks.
 * Unknown remote time (a large transaction applied while it streams): the newest.
 */
export function remoteWinsSql(policy: ConflictPolicy, remoteTime: string, localTime: string, remoteRank: string, localRank: string): string {
  switch (policy) {
    // custom tables are never judged here (resolver-apply.ts); as skip, should one be.
    case 'error': case 'skip': case 'custom': return 'false';
    case 'apply_remote': return 'true';
    case 'last_update_wins':
      return `(${remoteTime} IS NULL OR ${localTime} IS NULL OR ${remoteTime} > ${localTime} OR (${remoteTime} = ${localTime} AND ${remoteRank} < ${localRank}))`;
    case 'first_update_wins':
      return `(${remoteTime} IS NOT NULL AND ${localTime} IS NOT NULL AND (${remoteTime} < ${localTime} OR (${remoteTime} = ${localTime} AND ${remoteRank} < ${localRank})))`;
  }
}

/** The writer name (apply/conflict-time.ts writerOfOrigin) of origin id `ident` named `name`. */
function writerSql(ident: string, name: string): string {
  return `CASE WHEN ${ident} = 0 THEN ${literal(LOCAL_WRITER)} ELSE coalesce(substring(${name} from '^pgtide_(.*)_[0-9]+$'), ${name}) END`;
}

class Params {
  readonly values: (string | null)[] = [];
  add(value: string | null): string {
    this.values.push(value);
    return `$${this.values.length}::text`;
  }
}

/**
 * The CTE `l`: the rows of `v` that found a local row by `match`, with the local row (lrow),
 * its writer's origin and commit time (lorigin, ltime), whether that writer is not this edge
 * (differs) and whether the remote change wins (wins). The local rows are locked as they are
 * read (FOR UPDATE follows a row a local transaction changed after the statement's snapshot to
 * its newest version): the version judged is the one then changed, and no local write can slip
 * in between, which would otherwise be overwritten without being compared.
 */
function localRows(table: TargetTable, match: string, params: Params, options: OriginCheckOptions): string {
  const origin = params.add(options.originName);
  const remoteRank = String(writerRank(options.nodeOrder, options.subscription));
  // Only the time-based policies rank writers (an unreferenced parameter would have no type).
  const localRank = isTimePolicy(options.policy)
    ? `coalesce(array_position(${params.add(textArrayLiteral(options.nodeOrder ?? []))}::text[], ${writerSql('lc.lident', 'lc.lorigin')}), ${UNLISTED_RANK})`
    : String(UNLISTED_RANK);
  const wins = remoteWinsSql(options.policy, commitTimeOf('v'), 'lc.ltime', remoteRank, localRank);
  // Two steps: under READ COMMITTED, FOR UPDATE re-reads a row changed meanwhile, but a
  // function scan joined to it would keep the output it had for the old version.
  return `lk AS MATERIALIZED (SELECT v.*, to_jsonb(t) AS lrow, t.xmin AS lxmin FROM v JOIN ${table.relation.qualifiedName} AS t ON ${match} FOR UPDATE OF t),
      l AS MATERIALIZED (
        SELECT v.*, lc.lorigin, lc.ltime,
               (lc.ltime IS NOT NULL AND lc.lident IS DISTINCT FROM (SELECT o.roident FROM pg_replication_origin o WHERE o.roname = ${origin})) AS differs,
               ${wins} AS wins
          FROM lk AS v
          LEFT JOIN LATERAL (SELECT x."timestamp" AS ltime, x.roident AS lident, o.roname::text AS lorigin
                               FROM pg_xact_commit_timestamp_origin(v.lxmin) AS x LEFT JOIN pg_replication_origin AS o ON o.roident = x.roident) AS lc ON true)`;
}

/** A conflict_log INSERT from `from` (aliased `a`), returning (kind, resolution). */
function logFrom(options: {
  readonly kind: ConflictKind; readonly resolution: string; readonly table: TargetTable; readonly from: string; readonly subscription: string;
  readonly key: string; readonly remoteOld: string; readonly remoteNew: string; readonly local: boolean;
}): string {
  return `INSERT INTO pgtide.conflict_log (${LOG_COLUMNS})
    SELECT ${options.subscription}, ${literal(options.kind)}, ${options.resolution}, ${literal(options.table.relation.qualifiedName)},
           ${options.key}, ${options.remoteOld}, ${options.remoteNew},
           ${options.local ? 'pgtide.conflict_value(a.lrow), a.lorigin, a.ltime' : 'NULL, NULL, NULL'},
           a.sx::bigint, a.sl::pg_lsn, ${commitTimeOf('a')}, a.so
      FROM ${options.from} AS a
    RETURNING kind, resolution`;
}

const WINS_RESOLUTION = `CASE WHEN a.wins THEN 'apply_remote' ELSE 'skip' END`;

/** What a missing row resolves to: time-based policies have no local time to compare with, so they keep the target as it is. */
function missingResolution(policy: ConflictPolicy): 'skip' | 'apply_remote' {
  return policy === 'apply_remote' ? 'apply_remote' : 'skip';
}

export function updateCheckingOrigin(table: TargetTable, setColumns: readonly number[], rows: readonly KeyedUpdate[], sources: readonly TransactionInfo[], options: OriginCheckOptions): ConflictStatement | undefined {
  if (!keyedCheckable(table) || setColumns.some((i) => table.columns[i]!.identityAlways)) return undefined;
  const { set, where, arrays } = updateByKeyParts(table, setColumns, rows);
  const params = new Params();
  for (const array of [...arrays.map(textArrayLiteral), ...sourceArrays(sources)]) params.add(array);
  const subscription = params.add(options.subscription);
  const keyIndexes = table.relation.keyIndexes;
  const name = table.relation.qualifiedName;
  const { carried, present, complete } = runColumns(table, setColumns);
  const valueOf = (i: number): string | undefined => carried(i, 'a');
  const remoteNew = jsonRow(present.map((i) => table.columns[i]!.name), present.map((i) => valueOf(i)!));
  const key = keyJson(table, 'a', (i) => keyIndexes.indexOf(i));
  const missing = missingResolution(options.policy) === 'apply_remote' && complete ? 'apply_remote' : 'skip';
  const insert = missing === 'apply_remote' ? insertCarried(table, valueOf, 'm AS a') : '';
  const l = localRows(table, where, params, options);
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(arrays.length, SOURCE_COLUMNS, true)}),
      ${l},
      u AS (UPDATE ${name} AS t SET ${set} FROM v WHERE ${where} AND v.ord NOT IN (SELECT l.ord FROM l WHERE l.differs AND NOT l.wins) RETURNING v.ord),
      m AS MATERIALIZED (SELECT v.* FROM v WHERE v.ord NOT IN (SELECT l.ord FROM l))${insert},
      gone AS (${logFrom({ kind: 'update_missing', resolution: literal(missing), table, from: 'm', subscription, key, remoteOld: key, remoteNew, local: false })}),
      differ AS (${logFrom({ kind: 'update_origin_differs', resolution: WINS_RESOLUTION, table, from: '(SELECT * FROM l WHERE l.differs)', subscription, key, remoteOld: key, remoteNew, local: true })})
      SELECT kind, resolution FROM gone UNION ALL SELECT kind, resolution FROM differ`,
    params: params.values,
    logs: true,
  };
}

export function deleteCheckingOrigin(table: TargetTable, keys: readonly (readonly string[])[], sources: readonly TransactionInfo[], options: OriginCheckOptions): ConflictStatement | undefined {
  if (!keyedCheckable(table)) return undefined;
  const keyIndexes = table.relation.keyIndexes;
  const params = new Params();
  const arrays = keyIndexes.map((_, i) => textArrayLiteral(keys.map((key) => key[i]!)));
  for (const array of [...arrays, ...sourceArrays(sources)]) params.add(array);
  const subscription = params.add(options.subscription);
  const where = keyIndexes.map((col, i) => `t.${nameOf(table, col)} = v.c${i}::${typeOf(table, col)}`).join(' AND ');
  const name = table.relation.qualifiedName;
  const key = keyJson(table, 'a', (i) => keyIndexes.indexOf(i));
  const l = localRows(table, where, params, options);
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(arrays.length, SOURCE_COLUMNS, true)}),
      ${l},
      d AS (DELETE FROM ${name} AS t USING v WHERE ${where} AND v.ord NOT IN (SELECT l.ord FROM l WHERE l.differs AND NOT l.wins) RETURNING v.ord),
      m AS MATERIALIZED (SELECT v.* FROM v WHERE v.ord NOT IN (SELECT l.ord FROM l)),
      gone AS (${logFrom({ kind: 'delete_missing', resolution: literal(missingResolution(options.policy)), table, from: 'm', subscription, key, remoteOld: key, remoteNew: 'NULL', local: false })}),
      differ AS (${logFrom({ kind: 'delete_origin_differs', resolution: WINS_RESOLUTION, table, from: '(SELECT * FROM l WHERE l.differs)', subscription, key, remoteOld: key, remoteNew: 'NULL', local: true })})
      SELECT kind, resolution FROM gone UNION ALL SELECT kind, resolution FROM differ`,
    params: params.values,
    logs: true,
  };
}

/**
 * insert_exists under a time-based policy: every existing row is a conflict
 * (as in PostgreSQL, whoever wrote it); the remote row replaces it when it
 * wins (every column but the key and GENERATED ALWAYS identity columns), and
 * rows with no local row are inserted. A local row of this same batch has no
 * commit time: last_update_wins replaces it, first_update_wins keeps it.
 */
export function insertByTime(table: TargetTable, rows: readonly Tuple[], sources: readonly TransactionInfo[], options: OriginCheckOptions): ConflictStatement | undefined {
  const n = table.columns.length;
  if (n === 0 || !isTimePolicy(options.policy) || !keyedCheckable(table)) return undefined;
  const keyIndexes = table.relation.keyIndexes;
  const params = new Params();
  for (let c = 0; c < n; c++) params.add(textArrayLiteral(rows.map((row) => textOf(row[c], table, c))));
  for (const array of sourceArrays(sources)) params.add(array);
  const subscription = params.add(options.subscription);
  const name = table.relation.qualifiedName;
  const names = table.columns.map((_, i) => nameOf(table, i));
  const match = keyIndexes.map((i) => `t.${names[i]} = v.c${i}::${typeOf(table, i)}`).join(' AND ');
  const overwrite = table.columns.map((_, i) => i).filter((i) => !keyIndexes.includes(i) && !table.columns[i]!.identityAlways);
  const l = localRows(table, match, params, options);
  const update = overwrite.length > 0
    ? `u AS (UPDATE ${name} AS t SET ${overwrite.map((i) => `${names[i]} = v.c${i}::${typeOf(table, i)}`).join(', ')} FROM l AS v WHERE ${match} AND v.wins),`
    : '';
  return {
    text: `WITH v AS (SELECT * FROM ${unnestAs(n, SOURCE_COLUMNS, true)}),
      ${l},
      ${update}
      i AS (INSERT INTO ${name} (${names.join(', ')}) OVERRIDING SYSTEM VALUE
            SELECT ${table.columns.map((_, i) => `v.c${i}::${typeOf(table, i)}`).join(', ')} FROM v WHERE v.ord NOT IN (SELECT l.ord FROM l))
      ${logFrom({
        kind: 'insert_exists', resolution: WINS_RESOLUTION, table, from: 'l', subscription,
        key: keyJson(table, 'a', (i) => i), remoteOld: 'NULL', remoteNew: jsonRow(table.columns.map((c) => c.name), table.columns.map((_, i) => `a.c${i}`)), local: true,
      })}`,
    params: params.values,
    logs: true,
  };
}
