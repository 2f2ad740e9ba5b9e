/**
 * Rows of tables whose schema was renamed, until the source describes them
 * again.
 *
 * ALTER SCHEMA … RENAME TO changes pg_namespace only: the tables in it get no
 * relcache invalidation, so pgoutput on PostgreSQL 14 keeps the Relation it
 * already sent (the old schema name) and sends rows by OID under it, while the
 * target's table now has the new name. (PostgreSQL 18 sends the Relation
 * again; then the row already carries the new name and this does nothing.)
 * The DDL stage notes each table a rename moved, by OID (the capture names
 * them: src/source/ddl-capture-schemas.ts), and the rows that still carry the
 * old name are given the new one, until a Relation message with a name of its
 * own arrives for that OID. The gate in front of this stage keeps a table's
 * state by Relation object, found under the old name by the rows written
 * before the rename (pgoutput sends a Relation before a table's first row),
 * and that state moved with the rename (ddl-apply.ts).
 */
import type { RowChange } from '../changes/change.js';
import type { Relation } from '../changes/relation-cache.js';
import { qualify } from '../core/sql.js';

interface Renamed {
  readonly from: { readonly schema: string; readonly name: string };
  readonly to: { readonly schema: string; readonly name: string };
  /** The Relation seen under the old name, and the renamed copy handed on for it. */
  source?: Relation;
  renamed?: Relation;
}

export class RenamedRelations {
  readonly #byOid = new Map<number, Renamed>();
  /**
   * Versions for the renamed copies: negative, so they never equal a Relation
   * message's (writers cache a table's statements by version).
   */
  #nextVersion = 0;

  note(oid: number, from: { readonly schema: string; readonly name: string }, to: { readonly schema: string; readonly name: string }): void {
    const earlier = this.#byOid.get(oid);
    this.#byOid.set(oid, { from: earlier?.from ?? from, to });
  }

  get size(): number {
    return this.#byOid.size;
  }

  rename(change: RowChange): RowChange {
    if (this.#byOid.size === 0) return change;
    switch (change.kind) {
      case 'insert':
      case 'update':
      case 'delete': {
        const relation = this.#relation(change.relation);
        return relation === change.relation ? change : { ...change, relation };
      }
      case 'truncate': {
        const relations = change.relations.map((r) => this.#relation(r));
        return relations.every((r, i) => r === change.relations[i]) ? change : { ...change, relations };
      }
      default:
        return change;
    }
  }

  #relation(relation: Relation): Relation {
    const entry = this.#byOid.get(relation.oid);
    if (!entry) return relation;
    if (relation.schema !== entry.from.schema || relation.name !== entry.from.name) {
      // The source described the table again (under its current name): nothing left to do for it.
      this.#byOid.delete(relation.oid);
      return relation;
    }
    if (entry.source !== relation || !entry.renamed) {
      entry.source = relation;
      entry.renamed = { ...relation, schema: entry.to.schema, name: entry.to.name, qualifiedName: qualify(entry.to.schema, entry.to.name), version: --this.#nextVersion };
    }
    return entry.renamed;
  }
}
