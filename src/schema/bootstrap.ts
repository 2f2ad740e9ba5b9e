/**
 * Schema bootstrap: read the replicated tables' model on the source, read the
 * same names on the target, plan (diff.ts), and run what is to be created (and,
 * with applyDiff, the safe fixes) on the target in ONE transaction, so a
 * failure leaves the target as it was.
 */
import type postgres from 'postgres';
import { fromServerError, PgtideError } from '../core/errors.js';
import { listNames, qualify, type QualifiedName } from '../core/sql.js';
import { readSchemaModel } from './catalog-reader.js';
import { inPhaseOrder, type Statement } from './ddl.js';
import { planSchema, type SchemaPlan } from './diff.js';
import { objectKey, type SchemaModel } from './model.js';

export interface SchemaComparison {
  readonly source: SchemaModel;
  readonly target: SchemaModel;
  readonly plan: SchemaPlan;
}

/** Reads both sides for `tables` (source names) and plans. Changes nothing. */
export async function compareSchemas(source: postgres.Sql, target: postgres.Sql, tables: readonly QualifiedName[]): Promise<SchemaComparison> {
  const sourceModel = await readSchemaModel(source, { tables }, 'source');
  const found = new Set(sourceModel.tables.map(objectKey));
  const absent = tables.filter((t) => !found.has(objectKey(t))).map((t) => qualify(t.schema, t.name));
  if (absent.length > 0) {
    const one = absent.length === 1;
    throw new PgtideError('TABLE_MISSING_ON_SOURCE', `${listNames(absent)} ${one ? 'does' : 'do'} not exist on the source or ${one ? 'is not a table' : 'are not tables'}, so ${one ? 'its' : 'their'} schema cannot be copied. Check the names under \`tables:\` (quote mixed-case names, e.g. '"Sales"."Order"').`);
  }
  const targetModel = await readSchemaModel(target, {
    tables: sourceModel.tables,
    types: sourceModel.types,
    sequences: sourceModel.sequences,
    collations: sourceModel.collations,
    schemas: sourceModel.schemas,
  }, 'target');
  return { source: sourceModel, target: targetModel, plan: planSchema(sourceModel, targetModel) };
}

/** What a copy ran: the statements, in the order they ran, and the differences left as they were. */
export interface SchemaCopyResult {
  readonly comparison: SchemaComparison;
  readonly applied: readonly Statement[];
}

/**
 * Creates what is missing; with `applyDiff`, also runs the fixes of the
 * differences diff.ts accepts. `onApplied` is called for each statement once
 * the transaction committed.
 */
export async function copySchema(source: postgres.Sql, target: postgres.Sql, tables: readonly QualifiedName[], options: { readonly applyDiff: boolean; readonly onApplied?: (statement: Statement) => void }): Promise<SchemaCopyResult> {
  const comparison = await compareSchemas(source, target, tables);
  const { plan } = comparison;
  const statements = inPhaseOrder([
    ...plan.create,
    ...(options.applyDiff ? plan.differences.filter((d) => d.refused === null).flatMap((d) => d.fix) : []),
  ]);
  if (statements.length > 0) await runStatements(target, statements);
  for (const s of statements) options.onApplied?.(s);
  return { comparison, applied: statements };
}

async function runStatements(target: postgres.Sql, statements: readonly Statement[]): Promise<void> {
  let current: Statement | undefined;
  try {
    await target.begin(async (tx) => {
      // The deparsed texts were read with an empty search_path: every name in them is qualified.
      await tx.unsafe(`SET LOCAL search_path = ''`);
      await tx.unsafe(`SET LOCAL standard_conforming_strings = on`);
      // A default or check may call a function whose body names objects created later in this transaction.
      await tx.unsafe(`SET LOCAL check_function_bodies = off`);
      for (const statement of statements) {
        current = statement;
        await tx.unsafe(statement.sql);
      }
    });
  } catch (error) {
    throw schemaApplyFailed(current, error);
  }
}

/** Undefined object or function: what the source has and pgtide does not copy. */
const NOT_COPIED = new Set(['42704', '42883', '42P01']);

function schemaApplyFailed(statement: Statement | undefined, error: unknown): PgtideError {
  const mapped = fromServerError(error, 'target');
  if (!statement || mapped.code !== 'INTERNAL') return mapped;
  const hint = mapped.sqlState !== undefined && NOT_COPIED.has(mapped.sqlState)
    ? ' The source uses something pgtide does not copy (an extension, a function, a table outside the replicated set): create it on the target first (see docs/schema.md), then run pgtide schema copy again.'
    : ' Fix the target (or the source object), then run pgtide schema copy again.';
  return new PgtideError('SCHEMA_APPLY_FAILED', `creating ${statement.object} on the target failed: ${mapped.message}. Nothing was changed (the schema copy runs in one transaction). Statement: ${statement.sql}.${hint}`, {
    sqlState: mapped.sqlState, retryable: mapped.retryable, detail: mapped.detail, cause: error,
  });
}
