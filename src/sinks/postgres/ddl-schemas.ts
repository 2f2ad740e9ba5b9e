/**
 * Schemas on the target (the capture: src/source/ddl-capture-schemas.ts).
 *
 * A schema is created on the target when a table in scope is created or
 * moved into it (`CREATE SCHEMA IF NOT EXISTS`, so it is owned by pgtide's
 * target role, which needs CREATE on the database for that); a bare CREATE
 * SCHEMA on the source is not sent. A rename is `ALTER SCHEMA … RENAME TO`,
 * one statement that moves everything in it, as on the source. A dropped
 * schema is dropped once the tables the same DROP SCHEMA … CASCADE removed
 * are gone and nothing else is left in it: RESTRICT, so anything the target
 * holds there of its own (or a table ddl.destructive kept) keeps it.
 */
import { quoteIdent } from '../../core/sql.js';
import type { DdlEvent } from '../../apply/ddl-event.js';
import type { DdlQuery } from './apply-writer.js';
import type { DdlStep } from './ddl-step.js';

export type SchemaRename = Extract<DdlEvent, { event: 'schema' }>;

/**
 * The schema a created or moved table needs, before the table. Only when it
 * is missing: CREATE SCHEMA checks CREATE on the database before IF NOT
 * EXISTS, and a target role may have CREATE on its schemas only.
 */
export function ensureSchema(schema: string): DdlStep {
  const literal = `'${quoteIdent(schema).replace(/'/g, "''")}'`;
  return {
    sql: `DO $pgtide$ BEGIN IF pg_catalog.to_regnamespace(${literal}) IS NULL THEN CREATE SCHEMA ${quoteIdent(schema)}; END IF; END $pgtide$`,
    destructive: false, what: `create schema ${schema}`,
  };
}

/**
 * `ALTER SCHEMA old RENAME TO new` when the target has the old name and not
 * the new one. Without the old one there is nothing to rename (a schema
 * listed in newTableSchemas that no replicated table made the target create).
 * With both, the rename fails as it would on the source, under ddl.onError.
 */
export async function planSchemaRename(query: DdlQuery, event: SchemaRename): Promise<DdlStep[]> {
  const [row] = await query(`SELECT to_regnamespace($1) IS NOT NULL AS present`, [quoteIdent(event.old)]);
  if (row?.['present'] !== true) return [];
  return [{ sql: `ALTER SCHEMA ${quoteIdent(event.old)} RENAME TO ${quoteIdent(event.name)}`, destructive: false, what: `rename schema ${event.old} to ${event.name}` }];
}

export interface SchemaDropPlan {
  readonly steps: DdlStep[];
  /** Schemas left in place because something is still in them on the target. */
  readonly kept: string[];
}

/** Drops (destructive) each schema that exists on the target and holds nothing any more. */
export async function planSchemaDrops(query: DdlQuery, schemas: readonly { readonly name: string }[]): Promise<SchemaDropPlan> {
  const steps: DdlStep[] = [];
  const kept: string[] = [];
  for (const { name } of schemas) {
    // Every object in a schema records a dependency on its namespace in pg_depend.
    const [row] = await query(
      `SELECT n.oid IS NOT NULL AS present,
              EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = n.oid) AS used
         FROM (SELECT to_regnamespace($1)::oid AS oid) n`, [quoteIdent(name)]);
    if (row?.['present'] !== true) continue;
    if (row['used'] === true) {
      kept.push(name);
      continue;
    }
    steps.push({ sql: `DROP SCHEMA IF EXISTS ${quoteIdent(name)} RESTRICT`, destructive: true, what: `drop schema ${name}` });
  }
  return { steps, kept };
}
