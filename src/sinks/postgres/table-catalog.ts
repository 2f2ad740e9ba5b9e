/**
 * What the target database says about a replicated table: that it exists, and
 * the SQL type of each column the source sends. Apply statements cast the
 * text values the source sent to these types, so values pass through as text
 * and are never parsed into JavaScript types on the hot path.
 */
import type { Relation } from '../../changes/relation-cache.js';
import { PgtideError, fromServerError } from '../../core/errors.js';
import { textArrayLiteral } from '../../core/sql.js';
import { tableMissingOnTarget } from '../../core/missing-table.js';
import { TABLE_FACTS, tableFacts, type TableFacts, type TableFactsRow } from './table-facts.js';
import { addMissingColumns, type MissingColumnsHook } from './missing-columns.js';
import type { CatalogQuery } from './catalog-query.js';

/** Re-exported: the writer and the unique checks take it from here with the table types. */
export type { CatalogQuery };

export interface TargetColumn {
  readonly name: string;
  /** format_type() of the target column, used as a cast target. */
  readonly sqlType: string;
  /** Types with no "=" of their own (json, xml, geometric, composites) are matched on their text form. */
  readonly compareAsText: boolean;
  /** GENERATED ALWAYS AS IDENTITY: an UPDATE may not assign it (see moveRowStatement). */
  readonly identityAlways: boolean;
}

export interface TargetTable {
  readonly relation: Relation;
  /** Aligned with relation.columns. */
  readonly columns: readonly TargetColumn[];
  readonly facts: TableFacts;
}



interface ColumnRow extends TableFactsRow { attname: string | null; type: string; generated: boolean; identity_always: boolean; has_equality: boolean }

export class TableCatalog {
  readonly #query: CatalogQuery;
  readonly #byVersion = new Map<number, TargetTable>();
  /** Set: columns the source sends and the target lacks are added (missing-columns.ts), then reported here. */
  readonly #onAdded: MissingColumnsHook | undefined;

  constructor(query: CatalogQuery, onAdded?: MissingColumnsHook) {
    this.#query = query;
    this.#onAdded = onAdded;
  }

  /** After DDL on the target: a cached definition may name a renamed table or a changed type. */
  clear(): void {
    this.#byVersion.clear();
  }

  async resolve(relation: Relation, addedColumns = false): Promise<TargetTable> {
    const cached = this.#byVersion.get(relation.version);
    if (cached) return cached;
    let rows: readonly ColumnRow[];
    try {
      rows = await this.#query(
        // One row per column, or one row with a NULL attname for a table with no columns: the
        // table is looked up first, so "no columns" is not mistaken for "no table".
        // has_equality: the column's type (a domain's base type, an array's element type) has a
        // plain "=" of its own. Composites, and types like json, xml and point, do not; under
        // REPLICA IDENTITY FULL they are matched by their text form instead.
        `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated <> '' AS generated, a.attidentity = 'a' AS identity_always,
                CASE
                  WHEN b.typtype = 'c' THEN false
                  WHEN b.typtype IN ('e', 'r', 'm') THEN true
                  ELSE EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname = '=' AND o.oprleft = e.oid AND o.oprright = e.oid)
                END AS has_equality,
                ${TABLE_FACTS}
           FROM (SELECT to_regclass($1) AS oid) r
           LEFT JOIN (pg_attribute a
                      JOIN pg_type t ON t.oid = a.atttypid
                      JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                      JOIN pg_type e ON e.oid = CASE WHEN b.typcategory = 'A' AND b.typelem <> 0 THEN b.typelem ELSE b.oid END)
             ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE r.oid IS NOT NULL`,
        [relation.qualifiedName, textArrayLiteral(relation.keyIndexes.map((i) => relation.columns[i]!.name))],
      ) as readonly ColumnRow[];
    } catch (error) {
      throw fromServerError(error, 'target');
    }
    if (rows.length === 0) {
      throw tableMissingOnTarget([relation.qualifiedName]);
    }
    const byName = new Map(rows.flatMap((r) => (r.attname === null ? [] : [[r.attname, r] as const])));
    const missing = relation.columns.filter((c) => !byName.has(c.name));
    if (missing.length > 0 && this.#onAdded && !addedColumns && await addMissingColumns(this.#query, relation.qualifiedName, missing)) {
      this.#onAdded(relation.qualifiedName, missing);
      return this.resolve(relation, true);
    }
    const columns = relation.columns.map((column): TargetColumn => {
      const found = byName.get(column.name);
      if (!found) {
        throw new PgtideError('COLUMN_MISMATCH', `column "${column.name}" of ${relation.qualifiedName} exists on the source but not on the target. Add it on the target ('pgtide schema copy --apply-diff --config <file>' adds it as on the source, or ALTER TABLE ${relation.qualifiedName} ADD COLUMN ...), then restart pgtide.`);
      }
      if (found.generated) {
        throw new PgtideError('COLUMN_MISMATCH', `column "${column.name}" of ${relation.qualifiedName} is generated on the target but sent by the source. Make it a plain column on the target, or stop publishing generated columns on the source.`);
      }
      return { name: column.name, sqlType: found.type, compareAsText: !found.has_equality, identityAlways: found.identity_always };
    });
    const table = { relation, columns, facts: tableFacts(rows[0]!) };
    this.#byVersion.set(relation.version, table);
    return table;
  }
}
