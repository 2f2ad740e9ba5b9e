/**
 * The NDJSON form of one committed source transaction: one line, built piece
 * by piece as the transaction arrives (a streamed transaction replayed at
 * commit can hold millions of changes), so the sink never keeps the changes
 * themselves.
 *
 * A line, with keys always in this order (docs/ndjson.md):
 *
 *   {"xid":731,"commit_lsn":"0/1A2B3C8","commit_time":"2026-12-06T17:00:00.123456Z","origin":null,
 *    "changes":[ ...one object per change... ],"end_lsn":"0/1A2B3F0"}
 *
 * `end_lsn` comes last because it is only known at Commit. Values are never
 * parsed or invented: a column value is the PostgreSQL text form as a JSON
 * string, SQL NULL is JSON `null` (so the text "null" stays `"null"`), an
 * unchanged TOASTed value the server did not send is `{"toast":"unchanged"}`,
 * and a value sent in binary form is `{"base64":"..."}`. Column objects are
 * written by hand, not with JSON.stringify of an object, because an object
 * would move column names that look like integers ahead of the others.
 *
 * `key` holds the replica identity columns (primary key or REPLICA IDENTITY
 * USING INDEX), `null` for FULL and NOTHING. `old` is the whole old row and is
 * present only for REPLICA IDENTITY FULL: otherwise the server sends only the
 * key of the old row (the other columns as nulls it never read), which `key`
 * already holds.
 */
import type { CommitInfo, RowChange, TransactionInfo } from '../../changes/change.js';
import type { Relation } from '../../changes/relation-cache.js';
import { formatLsn } from '../../core/lsn.js';
import type { PgTimestamp, Tuple, TupleValue } from '../../protocol/messages.js';

/** PostgreSQL epoch (2000-01-01 UTC) in microseconds since the Unix epoch. */
const PG_EPOCH_US = 946_684_800_000_000n;

/** A commit time to the microsecond, as ISO 8601 in UTC (a JS Date would drop the microseconds). */
export function formatCommitTime(ts: PgTimestamp): string {
  const us = BigInt(ts) + PG_EPOCH_US;
  const ms = us / 1000n;
  const micros = us % 1000n;
  const iso = new Date(Number(ms)).toISOString(); // 2026-12-06T17:00:00.123Z
  return `${iso.slice(0, -1)}${String(micros).padStart(3, '0')}Z`;
}

export function valueJson(value: TupleValue): string {
  switch (value.kind) {
    case 'text': return JSON.stringify(value.value);
    case 'null': return 'null';
    case 'unchanged': return '{"toast":"unchanged"}';
    case 'binary': return `{"base64":"${Buffer.from(value.value.buffer, value.value.byteOffset, value.value.byteLength).toString('base64')}"}`;
  }
}

function rowJson(relation: Relation, tuple: Tuple, indexes?: readonly number[]): string {
  const parts: string[] = [];
  const columns = relation.columns;
  const each = (i: number): void => {
    const column = columns[i];
    const value = tuple[i];
    // A tuple shorter than the relation would be a protocol error upstream; never invent a value here.
    if (column !== undefined && value !== undefined) parts.push(`${JSON.stringify(column.name)}:${valueJson(value)}`);
  };
  if (indexes) for (const i of indexes) each(i);
  else for (let i = 0; i < columns.length; i++) each(i);
  return `{${parts.join(',')}}`;
}

/**
 * The key of an UPDATE: from the old key tuple when the server sent one (the
 * key changed, or FULL), else from the new row; an unchanged out-of-line key
 * column of the new row takes the old tuple's value when there is one.
 */
function keyJson(relation: Relation, primary: Tuple, fallback: Tuple | undefined): string {
  if (relation.keyIndexes.length === 0) return 'null';
  if (!fallback) return rowJson(relation, primary, relation.keyIndexes);
  const merged = primary.map((v, i) => (v.kind === 'unchanged' && fallback[i] !== undefined ? fallback[i]! : v));
  return rowJson(relation, merged, relation.keyIndexes);
}

function tableJson(relation: Relation): string {
  return `"schema":${JSON.stringify(relation.schema)},"table":${JSON.stringify(relation.name)}`;
}

export function changeJson(change: RowChange): string {
  switch (change.kind) {
    case 'insert':
      return `{"kind":"insert",${tableJson(change.relation)},"key":${keyJson(change.relation, change.newTuple, undefined)},"new":${rowJson(change.relation, change.newTuple)}}`;
    case 'update': {
      const r = change.relation;
      // With FULL the old tuple is the whole row; otherwise it is only sent when the key changed, and holds only the key.
      const key = change.oldTuple && r.replicaIdentity !== 'full' ? keyJson(r, change.oldTuple, undefined) : keyJson(r, change.newTuple, change.oldTuple);
      const old = r.replicaIdentity === 'full' && change.oldTuple ? `,"old":${rowJson(r, change.oldTuple)}` : '';
      return `{"kind":"update",${tableJson(r)},"key":${key}${old},"new":${rowJson(r, change.newTuple)}}`;
    }
    case 'delete': {
      const r = change.relation;
      const old = r.replicaIdentity === 'full' ? `,"old":${rowJson(r, change.oldTuple)}` : '';
      return `{"kind":"delete",${tableJson(r)},"key":${keyJson(r, change.oldTuple, undefined)}${old}}`;
    }
    case 'truncate':
      return `{"kind":"truncate","tables":[${change.relations.map((r) => `{${tableJson(r)}}`).join(',')}],"cascade":${change.cascade},"restart_identity":${change.restartIdentity}}`;
    case 'message':
      return `{"kind":"message","prefix":${JSON.stringify(change.prefix)},"content":${valueJson({ kind: 'binary', value: change.content })}}`;
  }
}

/** Everything of the line before the first change. */
export function lineHead(tx: TransactionInfo): string {
  return `{"xid":${tx.xid},"commit_lsn":"${formatLsn(tx.commitLsn)}","commit_time":"${formatCommitTime(tx.commitTime)}","origin":${tx.origin === undefined ? 'null' : JSON.stringify(tx.origin)},"changes":[`;
}

/** Everything after the last change, newline included: the line is complete only with it. */
export function lineTail(info: CommitInfo): string {
  return `],"end_lsn":"${formatLsn(info.endLsn)}"}\n`;
}

/** One whole line (for tests and small transactions). */
export function transactionLine(tx: TransactionInfo, changes: readonly RowChange[], info: CommitInfo): string {
  return lineHead(tx) + changes.map(changeJson).join(',') + lineTail(info);
}

/** The positions of a complete line, read back after a restart; undefined when it is not one of ours. */
export function linePositions(line: string): { readonly commitLsn: string; readonly endLsn: string } | undefined {
  const commit = /^\{"xid":\d+,"commit_lsn":"([0-9A-F]+\/[0-9A-F]+)"/.exec(line);
  const end = /,"end_lsn":"([0-9A-F]+\/[0-9A-F]+)"\}\s*$/.exec(line);
  return commit && end ? { commitLsn: commit[1]!, endLsn: end[1]! } : undefined;
}
