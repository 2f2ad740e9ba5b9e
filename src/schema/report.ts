/**
 * The text `pgtide schema diff` and `pgtide schema copy` print: what is
 * missing, each difference by name with what --apply-diff does about it, and
 * what was left out on purpose.
 */
import type { SchemaComparison } from './bootstrap.js';
import type { Statement } from './ddl.js';

export function hasDifferences(comparison: SchemaComparison): boolean {
  return comparison.plan.missing.length > 0 || comparison.plan.differences.length > 0;
}

/** `applied`: what a copy ran (undefined for a diff, which runs nothing). */
export function formatSchemaReport(comparison: SchemaComparison, applied?: readonly Statement[]): string {
  const { plan, source } = comparison;
  const ran = new Set((applied ?? []).map((s) => s.sql));
  const lines: string[] = [];
  const scope = `${source.tables.length} table(s), ${source.types.length} type(s), ${source.sequences.length} sequence(s), ${source.collations.length} collation(s), ${source.schemas.length} schema(s)`;
  if (applied !== undefined) {
    lines.push(applied.length === 0 ? 'nothing to create on the target' : `ran ${applied.length} statement(s) on the target:`);
    for (const s of applied) lines.push(`  ${s.object}: ${s.sql}`);
  } else if (plan.missing.length > 0) {
    lines.push(`missing on the target (${plan.missing.length}; pgtide schema copy creates them):`);
    for (const m of plan.missing) lines.push(`  ${m}`);
  }
  const left = plan.differences.filter((d) => !(d.fix.length > 0 && d.fix.every((f) => ran.has(f.sql))));
  if (left.length > 0) {
    lines.push(`differences (${left.length}):`);
    for (const d of left) {
      const action = d.refused !== null ? `not applied: ${d.refused}` : `--apply-diff runs: ${d.fix.map((f) => f.sql).join('; ')}`;
      lines.push(`  ${d.object}: ${d.message} (${action})`);
    }
  }
  if (plan.skipped.length > 0) {
    lines.push('left out:');
    for (const s of plan.skipped) lines.push(`  ${s}`);
  }
  if (applied === undefined && !hasDifferences(comparison)) lines.push(`source and target match: ${scope}`);
  else lines.push(`in scope: ${scope}`);
  return lines.join('\n');
}
