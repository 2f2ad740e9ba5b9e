/**
 * The table t (id integer, v text) the conflict unit tests build statements
 * for, a source transaction and a row of it: no server, just the shapes.
 */
import { RelationCache } from '../../src/changes/relation-cache.js';
import type { TargetTable } from '../../src/sinks/postgres/table-catalog.js';
import type { TransactionInfo } from '../../src/changes/change.js';
import type { PgTimestamp } from '../../src/protocol/messages.js';
import { lsn } from '../../src/core/lsn.js';

export interface TableShape {
  readonly replicaIdentity?: 'default' | 'full';
  /** Whether the Relation message flags id as a key column (default: true). */
  readonly idFlaggedKey?: boolean;
  /** Whether the target's key is unique, backed by an index on exactly the key (default: true). */
  readonly keyUnique?: boolean;
}

export function idValueTable(shape: TableShape = {}): TargetTable {
  const keyUnique = shape.keyUnique ?? true;
  const relation = new RelationCache().update({
    tag: 'relation', xid: undefined, relationOid: 7, schema: 'public', name: 't', replicaIdentity: shape.replicaIdentity ?? 'default',
    columns: [{ name: 'id', isKey: shape.idFlaggedKey ?? true, typeOid: 23, typeMod: -1 }, { name: 'v', isKey: false, typeOid: 25, typeMod: -1 }],
  });
  return { relation, columns: [
    { name: 'id', sqlType: 'integer', compareAsText: false, identityAlways: false },
    { name: 'v', sqlType: 'text', compareAsText: false, identityAlways: false },
  ], facts: { replicaTriggers: false, keyUnique, keyIndexExact: keyUnique } };
}

export const tx: TransactionInfo = { xid: 900, commitLsn: lsn(0x16b3748n), commitTime: 1000n as PgTimestamp, origin: undefined, streamed: false };
export const row = (id: string, v: string) => [{ kind: 'text' as const, value: id }, { kind: 'text' as const, value: v }];
