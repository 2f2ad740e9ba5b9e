/**
 * A source transaction as `pgtide.quarantine` holds it (docs/quarantine.md):
 * every change, whole, as JSON with text values, so it can be read by a
 * person and replayed later (quarantine-replay.ts) against whatever the
 * target's columns are then.
 *
 *   { "kind": "insert", "table": "\"public\".\"t\"", "new": { "id": "1", ... } }
 *   { "kind": "update", "table": …, "identity": "key", "key": { "id": "1" }, "new": {…}, "unchanged": ["doc"] }
 *   { "kind": "delete", "table": …, "identity": "full", "key": { …the whole old row… }, "old": {…} }
 *   { "kind": "truncate", "tables": [...], "cascade": false, "restart_identity": false }
 *   { "kind": "message", "prefix": "…", "content_base64": "…" }
 *
 * A column the source sent as unchanged TOAST has no value in `new` and is
 * listed in `unchanged` (the target keeps its value); SQL NULL is JSON null.
 */
import type { RowChange, TransactionInfo, CommitInfo } from '../../changes/change.js';
import type { Relation } from '../../changes/relation-cache.js';
import type { Tuple } from '../../protocol/messages.js';
import { formatLsn } from '../../core/lsn.js';
import { pgTimestampToDate } from '../../protocol/messages.js';
import type { Statement } from './statements.js';

export type RowValues = Record<string, string | null>;

export type QuarantinedChange =
  | { readonly kind: 'insert'; readonly table: string; readonly new: RowValues }
  | { readonly kind: 'update'; readonly table: string; readonly identity: 'key' | 'full'; readonly key: RowValues; readonly old?: RowValues; readonly new: RowValues; readonly unchanged?: readonly string[] }
  | { readonly kind: 'delete'; readonly table: string; readonly identity: 'key' | 'full'; readonly key: RowValues; readonly old?: RowValues }
  | { readonly kind: 'truncate'; readonly tables: readonly string[]; readonly cascade: boolean; readonly restart_identity: boolean }
  | { readonly kind: 'message'; readonly prefix: string; readonly content_base64: string };

interface Values { readonly values: RowValues; readonly unchanged: string[] }

function valuesOf(relation: Relation, tuple: Tuple, only?: readonly number[]): Values {
  const values: RowValues = {};
  const unchanged: string[] = [];
  const indexes = only ?? relation.columns.map((_, i) => i);
  for (const i of indexes) {
    const name = relation.columns[i]?.name ?? `column${i + 1}`;
    const value = tuple[i];
    if (!value || value.kind === 'unchanged') unchanged.push(name);
    else if (value.kind === 'null') values[name] = null;
    else if (value.kind === 'text') values[name] = value.value;
    else values[name] = Buffer.from(value.value).toString('utf8');
  }
  return { values, unchanged };
}

function keyOf(relation: Relation, oldTuple: Tuple | undefined, newTuple: Tuple | undefined): { identity: 'key' | 'full'; key: RowValues } {
  if (relation.replicaIdentity === 'full' || relation.keyIndexes.length === 0) return { identity: 'full', key: valuesOf(relation, (oldTuple ?? newTuple)!).values };
  // The old tuple carries the key when it changed (or was stored out of line); otherwise the new one does.
  const key: RowValues = {};
  for (const i of relation.keyIndexes) {
    const name = relation.columns[i]!.name;
    const before = oldTuple?.[i];
    const value = before && before.kind !== 'unchanged' ? before : newTuple?.[i];
    key[name] = value?.kind === 'text' ? value.value : null;
  }
  return { identity: 'key', key };
}

/**
 * The old row, under REPLICA IDENTITY FULL only: otherwise pgoutput sends the key columns alone
 * (the others as NULL, which would read as values), and `key` already holds them.
 */
function oldRow(relation: Relation, oldTuple: Tuple | undefined): { old?: RowValues } {
  return oldTuple && (relation.replicaIdentity === 'full' || relation.keyIndexes.length === 0) ? { old: valuesOf(relation, oldTuple).values } : {};
}

export function quarantinedChange(change: RowChange): QuarantinedChange {
  switch (change.kind) {
    case 'insert':
      return { kind: 'insert', table: change.relation.qualifiedName, new: valuesOf(change.relation, change.newTuple).values };
    case 'update': {
      const { values, unchanged } = valuesOf(change.relation, change.newTuple);
      return {
        kind: 'update', table: change.relation.qualifiedName, ...keyOf(change.relation, change.oldTuple, change.newTuple),
        ...oldRow(change.relation, change.oldTuple),
        new: values, ...(unchanged.length > 0 ? { unchanged } : {}),
      };
    }
    case 'delete':
      return { kind: 'delete', table: change.relation.qualifiedName, ...keyOf(change.relation, change.oldTuple, undefined), ...oldRow(change.relation, change.oldTuple) };
    case 'truncate':
      return { kind: 'truncate', tables: change.relations.map((r) => r.qualifiedName), cascade: change.cascade, restart_identity: change.restartIdentity };
    case 'message':
      return { kind: 'message', prefix: change.prefix, content_base64: Buffer.from(change.content).toString('base64') };
  }
}

export function tablesOf(changes: readonly QuarantinedChange[]): string[] {
  const tables = new Set<string>();
  for (const c of changes) {
    if (c.kind === 'truncate') for (const t of c.tables) tables.add(t);
    else if (c.kind !== 'message') tables.add(c.table);
  }
  return [...tables];
}

export interface QuarantineReason {
  readonly code: string;
  readonly sqlState: string | undefined;
  readonly message: string;
}

/** The INSERT of one quarantined transaction, sent in the apply batch that moves the applied position past it. */
export function quarantineInsert(subscription: string, tx: TransactionInfo, info: CommitInfo, reason: QuarantineReason, changes: readonly QuarantinedChange[]): Statement {
  return {
    text: `INSERT INTO pgtide.quarantine (subscription, source_xid, commit_lsn, end_lsn, commit_time, origin, error_code, sql_state, error_message, tables, changes)
           VALUES ($1::text, $2::text::bigint, $3::text::pg_lsn, $4::text::pg_lsn, $5::text::timestamptz, $6::text, $7::text, $8::text, $9::text,
                   (SELECT coalesce(array_agg(t), '{}') FROM jsonb_array_elements_text($10::text::jsonb) t), $11::text::jsonb)`,
    params: [
      subscription, String(tx.xid), formatLsn(info.commitLsn), formatLsn(info.endLsn), pgTimestampToDate(info.commitTime).toISOString(),
      tx.origin ?? null, reason.code, reason.sqlState ?? null, reason.message, JSON.stringify(tablesOf(changes)), JSON.stringify(changes),
    ],
  };
}

/** Consumes a `pgtide skip` in the same batch as the quarantine it asked for. */
export function consumeSkipStatement(subscription: string): Statement {
  return { text: `UPDATE pgtide.apply_stop SET skip = false, skip_lsn = NULL WHERE subscription = $1::text`, params: [subscription] };
}
