/**
 * Carrying out a custom resolver's decisions (apply/conflict-resolver.ts,
 * docs/conflicts.md "Custom resolver").
 *
 * The resolver needs the local row before it decides, so a run of a `custom`
 * table is first applied by a probe statement under `skip` semantics (the
 * local row is kept, a missing row is left missing) that returns the input
 * rows that conflicted, with the local row. When it returned any, the resolver
 * is called for each, in the run's order, and the follow-up statements (the
 * rows it decided to apply or merge, then one conflict_log row per conflict)
 * are sent in the same target transaction, before anything else of the batch:
 * each conflict is resolved and logged exactly when its batch commits, once,
 * across kill -9.
 *
 * The probe is optimistic: it goes out pipelined like any statement, and an
 * answer without conflicts costs nothing more. An answer with conflicts comes
 * back after later statements (the next run of the table, the COMMIT) may
 * already have gone out behind it; then the batch must not commit. So an
 * optimistic probe also counts its conflicts in a transaction-local setting,
 * the follow-ups of conflicts resolved in place count them down, and a guard
 * in front of the batch's COMMIT fails the transaction while any are left
 * (UNRESOLVED_GUARD). The writer then replays the batch with the table
 * awaited (resolver-replay.ts): its probe holds the pipeline until the
 * follow-ups are sent (ApplyWriter#issueResolved).
 */
import type { TransactionInfo } from '../../changes/change.js';
import type { Tuple } from '../../protocol/messages.js';
import type { TargetTable } from './table-catalog.js';
import { textOf, updateByKeyParts, type KeyedUpdate, type Statement } from './statements.js';
import type { CountedStatement } from './net-effect.js';
import { ZERO_LSN, type Lsn } from '../../core/lsn.js';
import { fullBody, localCommit, type FullChange, type LocalCommitInfo } from './conflict-statements.js';
import { quoteIdent, textArrayLiteral } from '../../core/sql.js';
import { formatLsn } from '../../core/lsn.js';
import { PgtideError, redact } from '../../core/errors.js';
import type { ConflictResolution, NamedResolver } from '../../apply/conflict-policy.js';
import { checkDecision, type ResolvableConflictKind, type ResolverConflict, type ResolverDecision, type ResolverRow } from '../../apply/conflict-resolver.js';

export interface CustomRunOptions {
  readonly resolver: NamedResolver;
  readonly subscription: string;
  readonly local: LocalCommitInfo;
}

/** The runs of the apply writer a resolver decides (the writer's Run is assignable to this). */
export type ResolverRun =
  | { readonly kind: 'insert'; readonly table: TargetTable; readonly rows: readonly Tuple[]; readonly sources: readonly TransactionInfo[] }
  | { readonly kind: 'update'; readonly table: TargetTable; readonly setColumns: readonly number[]; readonly rows: readonly KeyedUpdate[]; readonly sources: readonly TransactionInfo[] }
  | { readonly kind: 'delete'; readonly table: TargetTable; readonly keys: readonly (readonly string[])[]; readonly sources: readonly TransactionInfo[] }
  | { readonly kind: 'counted'; readonly table: TargetTable; readonly counted: CountedStatement; readonly full?: FullChange | undefined };

/** One row the probe returns: the 1-based ordinal of a conflicting input row, and the local row if any. */
export interface ProbeRow {
  readonly ord: number;
  /** The local row as text values (what the resolver sees), and as to_jsonb gives it (what the log keeps). */
  readonly lrow?: string | null;
  readonly ljson?: string | null;
  readonly lorigin?: string | null;
  /** ISO 8601 UTC with microseconds. */
  readonly ltime?: string | null;
}

export interface Resolution {
  /** The rows the resolver decided to apply or merge, in the run's order. */
  readonly writes: readonly Statement[];
  /** One conflict_log row per conflict; returns (kind, resolution) per row. */
  readonly log: Statement;
}

const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;
const nameOf = (table: TargetTable, i: number): string => quoteIdent(table.columns[i]!.name);
const typeOf = (table: TargetTable, i: number): string => table.columns[i]!.sqlType;
const ISO_UTC = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

/**
 * Conflicts found by optimistic probes of the open target transaction and not
 * resolved in place. A transaction-local setting (set_config(…, true)): a
 * rollback, or a ROLLBACK TO SAVEPOINT, undoes it with the rows it counted.
 */
const UNRESOLVED = `coalesce(nullif(current_setting('pgtide.unresolved', true), ''), '0')::int`;
/** One per output row of an optimistic probe, that is per conflict. */
const COUNT_UNRESOLVED = `set_config('pgtide.unresolved', (${UNRESOLVED} + 1)::text, true) AS unresolved`;

/** Sent before a COMMIT that follows optimistic probes: fails the transaction while conflicts are left unresolved. */
export const UNRESOLVED_GUARD: Statement = { text: `SELECT 1 / (${UNRESOLVED} = 0)::int AS resolved`, params: [] };

/** Sent after the follow-ups of an optimistic probe's conflicts resolved in place. */
export function resolvedInPlace(conflicts: number): Statement {
  return { text: `SELECT set_config('pgtide.unresolved', (${UNRESOLVED} - $1::int)::text, true) AS unresolved`, params: [String(conflicts)] };
}

/** The commit LSN of a run's first source transaction (what decides whether the run is awaited after a replay). */
export function runCommitLsn(run: ResolverRun): Lsn {
  return (run.kind === 'counted' ? run.full?.source.commitLsn : run.sources[0]?.commitLsn) ?? ZERO_LSN;
}

function unnestOrd(arrays: number): string {
  const params = Array.from({ length: arrays }, (_, i) => `$${i + 1}::text[]`);
  const names = Array.from({ length: arrays }, (_, i) => `c${i}`);
  return `unnest(${params.join(', ')}) WITH ORDINALITY AS v(${[...names, 'ord'].join(', ')})`;
}

/** The local row as an object of text values (PostgreSQL's output, as pgoutput sends values). */
function localText(table: TargetTable): string {
  return `jsonb_object(ARRAY[${table.columns.map((c) => literal(c.name)).join(', ')}]::text[], ARRAY[${table.columns.map((_, i) => `t.${nameOf(table, i)}::text`).join(', ')}]::text[])::text`;
}

/**
 * The run's statement under skip semantics, returning the conflicting input
 * rows (see the file comment); undefined where a run cannot be checked per
 * key (then the writer's usual statement applies, as for every policy).
 * `optimistic`: each conflicting row is also counted in pgtide.unresolved.
 */
export function probeStatement(run: ResolverRun, local: LocalCommitInfo, optimistic = false): Statement | undefined {
  const tally = optimistic ? `, ${COUNT_UNRESOLVED}` : '';
  const { table } = run;
  const keyIndexes = table.relation.keyIndexes;
  const name = table.relation.qualifiedName;
  const keyed = keyIndexes.length > 0 && table.relation.replicaIdentity !== 'full';
  switch (run.kind) {
    case 'insert': {
      const n = table.columns.length;
      if (!keyed || n === 0 || run.sources.length !== run.rows.length) return undefined;
      const params = Array.from({ length: n }, (_, c) => textArrayLiteral(run.rows.map((row) => textOf(row[c], table, c))));
      const names = table.columns.map((_, i) => nameOf(table, i));
      const keyNames = keyIndexes.map((i) => names[i]).join(', ');
      const typedKey = keyIndexes.map((i) => `v.c${i}::${typeOf(table, i)}`).join(', ');
      const match = keyIndexes.map((i) => `t.${nameOf(table, i)} = s.c${i}::${typeOf(table, i)}`).join(' AND ');
      const commit = localCommit(local);
      const found = `t.${nameOf(table, keyIndexes[0]!)} IS NOT NULL`;
      // ON CONFLICT DO NOTHING with no arbiter: whatever unique index the row meets, the local row
      // stays for now; the input rows whose key the INSERT did not return are the conflicts.
      return {
        text: `WITH v AS (SELECT * FROM ${unnestOrd(n)}),
          i AS (INSERT INTO ${name} (${names.join(', ')}) OVERRIDING SYSTEM VALUE SELECT ${table.columns.map((_, i) => `v.c${i}::${typeOf(table, i)}`).join(', ')} FROM v
                ON CONFLICT DO NOTHING RETURNING ${keyNames}),
          s AS MATERIALIZED (SELECT v.* FROM v WHERE (SELECT count(*) FROM i) < (SELECT count(*) FROM v) AND (${typedKey}) NOT IN (SELECT ${keyNames} FROM i))
          SELECT s.ord::int AS ord, CASE WHEN ${found} THEN ${localText(table)} END AS lrow, CASE WHEN ${found} THEN to_jsonb(t)::text END AS ljson,
                 ${commit.origin} AS lorigin, to_char(${commit.time} AT TIME ZONE 'UTC', ${ISO_UTC}) AS ltime${tally}
            FROM s LEFT JOIN ${name} AS t ON ${match}${commit.join}
           ORDER BY s.ord`,
        params,
      };
    }
    case 'update': {
      if (!keyed || !table.facts.keyUnique || run.setColumns.some((i) => table.columns[i]!.identityAlways) || run.sources.length !== run.rows.length) return undefined;
      const { set, where, arrays } = updateByKeyParts(table, run.setColumns, run.rows);
      return {
        text: `WITH v AS (SELECT * FROM ${unnestOrd(arrays.length)}),
          u AS (UPDATE ${name} AS t SET ${set} FROM v WHERE ${where} RETURNING v.ord)
          SELECT v.ord::int AS ord${tally} FROM v WHERE (SELECT count(*) FROM u) < (SELECT count(*) FROM v) AND v.ord NOT IN (SELECT u.ord FROM u) ORDER BY v.ord`,
        params: arrays.map(textArrayLiteral),
      };
    }
    case 'delete': {
      if (!keyed || !table.facts.keyUnique || run.sources.length !== run.keys.length) return undefined;
      const arrays = keyIndexes.map((_, i) => textArrayLiteral(run.keys.map((key) => key[i]!)));
      const where = keyIndexes.map((col, i) => `t.${nameOf(table, col)} = v.c${i}::${typeOf(table, col)}`).join(' AND ');
      return {
        text: `WITH v AS (SELECT * FROM ${unnestOrd(arrays.length)}),
          d AS (DELETE FROM ${name} AS t USING v WHERE ${where} RETURNING v.ord)
          SELECT v.ord::int AS ord${tally} FROM v WHERE (SELECT count(*) FROM d) < (SELECT count(*) FROM v) AND v.ord NOT IN (SELECT d.ord FROM d) ORDER BY v.ord`,
        params: arrays,
      };
    }
    case 'counted': {
      // REPLICA IDENTITY FULL: one change per statement, found by its whole old row.
      const body = run.full ? fullBody(run.counted.statement) : undefined;
      if (!body) return undefined;
      return { text: `WITH u AS (${body}) SELECT 1 AS ord${tally} WHERE NOT EXISTS (SELECT 1 FROM u)`, params: run.counted.statement.params };
    }
  }
}

/** A conflict as the probe found it, before the resolver decides. */
interface Found {
  readonly conflict: ResolverConflict;
  readonly source: TransactionInfo;
  readonly localJson: string | null;
  readonly localTime: string | null;
}

/** The row as an object of text values; absent or unchanged-TOAST columns are left out. */
function tupleRow(table: TargetTable, tuple: Tuple | undefined): Record<string, string | null> {
  const row: Record<string, string | null> = {};
  if (!tuple) return row;
  table.columns.forEach((column, i) => {
    const value = tuple[i];
    if (value && value.kind !== 'unchanged') row[column.name] = textOf(value, table, i);
  });
  return row;
}

function keyRow(table: TargetTable, key: readonly (string | null)[]): Record<string, string | null> {
  const row: Record<string, string | null> = {};
  table.relation.keyIndexes.forEach((col, i) => { row[table.columns[col]!.name] = key[i] ?? null; });
  return row;
}

/** pgoutput's commit time (microseconds since 2000-01-01 UTC) as ISO 8601 with microseconds. */
export function isoMicros(commitTime: bigint): string {
  const micros = commitTime + 946_684_800_000_000n;
  const seconds = micros / 1_000_000n;
  const fraction = String(micros % 1_000_000n).padStart(6, '0');
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${fraction}Z`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function found(run: ResolverRun, rows: readonly ProbeRow[]): Found[] {
  const { table } = run;
  const tableName = { schema: table.relation.schema, name: table.relation.name };
  const sourceOf = (s: TransactionInfo): ResolverConflict['source'] => ({
    xid: s.xid,
    commitLsn: s.streamed ? null : formatLsn(s.commitLsn),
    commitTime: s.streamed ? null : isoMicros(s.commitTime),
    origin: s.origin ?? null,
  });
  return rows.map((probe) => {
    const at = probe.ord - 1;
    let kind: ResolvableConflictKind;
    let key: ResolverRow;
    let remote: ResolverConflict['remote'];
    let local: ResolverConflict['local'] = null;
    let source: TransactionInfo;
    switch (run.kind) {
      case 'insert': {
        const tuple = run.rows[at]!;
        kind = 'insert_exists';
        key = keyRow(table, table.relation.keyIndexes.map((i) => textOf(tuple[i], table, i)));
        remote = { old: null, new: tupleRow(table, tuple) };
        if (probe.lrow) local = { row: JSON.parse(probe.lrow) as ResolverRow, origin: probe.lorigin ?? null, commitTime: probe.ltime ?? null };
        source = run.sources[at]!;
        break;
      }
      case 'update': {
        const row = run.rows[at]!;
        kind = 'update_missing';
        key = keyRow(table, row.key);
        remote = { old: key, new: tupleRow(table, row.newTuple) };
        source = run.sources[at]!;
        break;
      }
      case 'delete': {
        kind = 'delete_missing';
        key = keyRow(table, run.keys[at]!);
        remote = { old: key, new: null };
        source = run.sources[at]!;
        break;
      }
      case 'counted': {
        const change = run.full!;
        kind = change.newTuple ? 'update_missing' : 'delete_missing';
        key = tupleRow(table, change.oldTuple);
        remote = { old: key, new: change.newTuple ? tupleRow(table, change.newTuple) : null };
        source = change.source;
        break;
      }
    }
    const conflict: ResolverConflict = deepFreeze({ kind, table: tableName, key, remote, local, source: sourceOf(source) });
    return { conflict, source, localJson: probe.ljson ?? null, localTime: probe.ltime ?? null };
  });
}

function describeSource(s: TransactionInfo): string {
  return s.streamed ? `source transaction xid ${s.xid}` : `source transaction xid ${s.xid}, commit LSN ${formatLsn(s.commitLsn)}`;
}

async function decide(f: Found, table: TargetTable, resolver: NamedResolver): Promise<ResolverDecision> {
  const where = `${f.conflict.kind} on ${table.relation.qualifiedName}, key ${JSON.stringify(f.conflict.key)}, ${describeSource(f.source)}`;
  const failed = (problem: string, cause?: unknown): PgtideError => new PgtideError('CONFLICT_RESOLVER_FAILED',
    `the conflict resolver ${resolver.module} failed on ${where}: ${redact(problem)}. pgtide stops (nothing of the batch is applied): fix the resolver (it must return a decision for every conflict, deterministically), then start pgtide again (see docs/conflicts.md, "Custom resolver").`,
    { retryable: false, ...(cause === undefined ? {} : { cause }) });
  let result: unknown;
  try {
    result = await resolver.resolve(f.conflict);
  } catch (error) {
    throw failed(`it threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`, error);
  }
  const columns = table.columns.map((c) => c.name);
  const checked = checkDecision(result, f.conflict, columns, table.relation.keyIndexes.map((i) => columns[i]!));
  if ('problem' in checked) throw failed(checked.problem);
  if (checked.ok.action === 'error') {
    throw new PgtideError('APPLY_CONFLICT', `conflict ${where}: the conflict resolver ${resolver.module} decided to stop${checked.ok.reason ? ` (${redact(checked.ok.reason)})` : ''}. pgtide stops (nothing of the batch is applied): fix the row on the target or change the resolver, then start pgtide again (see docs/conflicts.md).`,
      { retryable: false, detail: JSON.stringify(f.conflict.key) });
  }
  return checked.ok;
}

/** UPDATE of the local row by key: the given columns (key columns are never assigned). */
function updateLocal(table: TargetTable, key: ResolverRow, values: ReadonlyMap<number, string | null>): Statement | undefined {
  const keyIndexes = table.relation.keyIndexes;
  const params: (string | null)[] = [];
  const param = (value: string | null, i: number): string => {
    params.push(value);
    return `$${params.length}::text::${typeOf(table, i)}`;
  };
  const set = [...values].filter(([i]) => !keyIndexes.includes(i)).map(([i, v]) => `${nameOf(table, i)} = ${param(v, i)}`);
  if (set.length === 0) return undefined;
  const where = keyIndexes.map((i) => `t.${nameOf(table, i)} = ${param(key[table.columns[i]!.name] ?? null, i)}`).join(' AND ');
  return { text: `UPDATE ${table.relation.qualifiedName} AS t SET ${set.join(', ')} WHERE ${where}`, params };
}

function insertRow(table: TargetTable, values: ReadonlyMap<number, string | null>): Statement {
  const columns = [...values.keys()];
  return {
    text: `INSERT INTO ${table.relation.qualifiedName} (${columns.map((i) => nameOf(table, i)).join(', ')}) OVERRIDING SYSTEM VALUE
           VALUES (${columns.map((i, n) => `$${n + 1}::text::${typeOf(table, i)}`).join(', ')})`,
    params: [...values.values()],
  };
}

/** Column index → value, for the named columns of `row` (in table order). */
function valuesOf(table: TargetTable, row: ResolverRow, keep: (i: number) => boolean = () => true): Map<number, string | null> {
  const values = new Map<number, string | null>();
  table.columns.forEach((column, i) => {
    if (Object.hasOwn(row, column.name) && keep(i)) values.set(i, row[column.name] ?? null);
  });
  return values;
}

/** The statement that carries out one decision, if it writes anything. */
function writeFor(table: TargetTable, f: Found, decision: ResolverDecision): Statement | undefined {
  const { conflict } = f;
  const remoteNew = conflict.remote.new ?? {};
  if (decision.action === 'skip' || decision.action === 'error' || conflict.kind === 'delete_missing') return undefined;
  const row: ResolverRow = decision.action === 'merge' ? decision.row : remoteNew;
  if (conflict.kind === 'insert_exists' && conflict.local) {
    // apply_remote leaves GENERATED ALWAYS identity columns alone, as the apply_remote policy does.
    return updateLocal(table, conflict.key, valuesOf(table, row, (i) => decision.action === 'merge' || !table.columns[i]!.identityAlways));
  }
  // update_missing (or an insert whose local row holds another unique value than the key): insert
  // the remote row, overlaid with a merge's columns. On an insert_exists without a local row by
  // key this meets the other unique index again: 23505 stops apply, naming it.
  return insertRow(table, valuesOf(table, { ...remoteNew, ...row }));
}

/** The row a decision leaves on the target, for the log (a merge over the local or the remote row). */
function resultRow(f: Found, decision: ResolverDecision): ResolverRow | null {
  if (decision.action !== 'merge') return f.conflict.remote.new;
  const base = f.conflict.kind === 'insert_exists' && f.conflict.local ? f.conflict.local.row : f.conflict.remote.new;
  return { ...base, ...decision.row };
}

/**
 * Calls the resolver for each conflicting row the probe returned, in order, and
 * builds the statements that carry out its decisions and log them. Throws a
 * PgtideError when the resolver fails, returns something invalid, or decides
 * to stop: the batch then rolls back and apply stops.
 */
export async function resolveConflicts(run: ResolverRun, rows: readonly ProbeRow[], options: CustomRunOptions): Promise<Resolution> {
  const { table } = run;
  const writes: Statement[] = [];
  const log: (string | null)[][] = Array.from({ length: 12 }, () => []);
  for (const f of found(run, rows)) {
    const decision = await decide(f, table, options.resolver);
    const write = writeFor(table, f, decision);
    if (write) writes.push(write);
    const resolution: ConflictResolution = decision.action === 'merge' ? 'custom:merge' : decision.action === 'apply_remote' ? 'custom:apply_remote' : 'custom:skip';
    const s = f.source;
    const json = (row: ResolverRow | null): string | null => (row ? JSON.stringify(row) : null);
    // A merge logs the row it left on the target as remote_new: the remote row alone would not say what was written.
    const remoteNew = json(resultRow(f, decision));
    const values = [f.conflict.kind, resolution, JSON.stringify(f.conflict.key), json(f.conflict.remote.old), remoteNew, f.localJson,
      f.conflict.local?.origin ?? null, f.localTime, String(s.xid), s.streamed ? null : formatLsn(s.commitLsn), s.streamed ? null : String(s.commitTime), s.origin ?? null];
    values.forEach((value, i) => log[i]!.push(value));
  }
  const params = [...log.map(textArrayLiteral), options.subscription];
  return {
    writes,
    log: {
      text: `INSERT INTO pgtide.conflict_log (subscription, kind, resolution, table_name, key, remote_old, remote_new, local_row, local_origin, local_commit_time,
                                             source_xid, source_commit_lsn, source_commit_time, source_origin)
             SELECT $13::text, v.kind, v.resolution, ${literal(table.relation.qualifiedName)}, pgtide.conflict_value(v.key::jsonb), pgtide.conflict_value(v.rold::jsonb),
                    pgtide.conflict_value(v.rnew::jsonb), pgtide.conflict_value(v.lrow::jsonb), v.lorigin, v.ltime::timestamptz, v.sx::bigint, v.sl::pg_lsn,
                    '2000-01-01 00:00:00+00'::timestamptz + v.st::bigint * interval '1 microsecond', v.so
               FROM unnest(${log.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS v(kind, resolution, key, rold, rnew, lrow, lorigin, ltime, sx, sl, st, so)
             RETURNING kind, resolution`,
      params,
    },
  };
}
