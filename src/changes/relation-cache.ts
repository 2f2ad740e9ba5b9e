/**
 * Relations as described by the source's Relation messages.
 *
 * pgoutput sends a Relation message before the first change to a table in a
 * session, and again whenever its definition changes; changes then refer to it
 * by OID. The cache is updated in stream order, so a change is always read
 * with the column list that was current when it was written.
 */
import type { RelationMessage, ReplicaIdentity, RelationColumn } from '../protocol/messages.js';
import { PgtideError } from '../core/errors.js';
import { qualify } from '../core/sql.js';

export interface Relation {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  readonly replicaIdentity: ReplicaIdentity;
  readonly columns: readonly RelationColumn[];
  /** Indexes into `columns` of the replica identity key (empty for FULL and NOTHING). */
  readonly keyIndexes: readonly number[];
  /** `"schema"."name"`, quoted for SQL. */
  readonly qualifiedName: string;
  /** Bumped each time the relation's definition changes; writers cache statements by it. */
  readonly version: number;
}

export class RelationCache {
  readonly #byOid = new Map<number, Relation>();
  #version = 0;

  update(message: RelationMessage): Relation {
    const keyIndexes: number[] = [];
    message.columns.forEach((column, index) => {
      if (column.isKey) keyIndexes.push(index);
    });
    const relation: Relation = {
      oid: message.relationOid,
      schema: message.schema,
      name: message.name,
      replicaIdentity: message.replicaIdentity,
      columns: message.columns,
      keyIndexes: message.replicaIdentity === 'full' ? [] : keyIndexes,
      qualifiedName: qualify(message.schema, message.name),
      version: ++this.#version,
    };
    this.#byOid.set(relation.oid, relation);
    return relation;
  }

  get(oid: number): Relation {
    const relation = this.#byOid.get(oid);
    if (!relation) {
      throw new PgtideError('PROTOCOL_VIOLATION', `a change refers to relation OID ${oid}, but no Relation message for it was received; restart pgtide to resume from the last applied position.`);
    }
    return relation;
  }

  has(oid: number): boolean {
    return this.#byOid.has(oid);
  }
}
