/**
 * The `conflicts:` section of the config (docs/conflicts.md):
 *
 *   conflicts:
 *     policy: error            # error | skip | apply_remote
 *     tables:
 *       public.audit: skip     # per-table override
 *     deltaColumns:            # columns updated by difference (counters; REPLICA IDENTITY FULL)
 *       public.acct: [balance]
 *
 * Kept apart from config.ts so the conflict feature's validation is one file.
 */
import { z } from 'zod';
import { parseQualifiedName, qualify } from '../core/sql.js';
import { CONFLICT_POLICIES, type ConflictPolicy, type ConflictSettings } from '../apply/conflict-policy.js';

const TIME_POLICIES = new Set(['last_update_wins', 'first_update_wins']);

const conflictPolicy = z.string().transform((value, ctx): ConflictPolicy => {
  if ((CONFLICT_POLICIES as readonly string[]).includes(value)) return value as ConflictPolicy;
  ctx.addIssue({
    code: 'custom',
    message: TIME_POLICIES.has(value)
      ? `"${value}" is not implemented yet (it needs the local row's commit time from track_commit_timestamp); use error, skip or apply_remote (see docs/conflicts.md)`
      : `"${value}" is not a conflict policy; use one of ${CONFLICT_POLICIES.join(', ')}`,
  });
  return z.NEVER;
});

export const conflictsSchema = z.object({
  policy: conflictPolicy.default('error'),
  tables: z.record(z.string(), conflictPolicy).default({}),
  deltaColumns: z.record(z.string(), z.array(z.string().min(1)).min(1)).default({}),
}).strict().superRefine((value, ctx) => {
  for (const name of Object.keys(value.tables)) {
    if (!parseQualifiedName(name)) ctx.addIssue({ code: 'custom', path: ['tables', name], message: `"${name}" is not a table name; write schema.table` });
  }
  for (const name of Object.keys(value.deltaColumns)) {
    if (!parseQualifiedName(name)) ctx.addIssue({ code: 'custom', path: ['deltaColumns', name], message: `"${name}" is not a table name; write schema.table` });
  }
}).default({ policy: 'error', tables: {}, deltaColumns: {} });

export type ConflictsConfig = z.infer<typeof conflictsSchema>;

/** The settings the apply side uses: table names as Relation.qualifiedName spells them. */
export function conflictSettings(config: ConflictsConfig): ConflictSettings {
  const tables = new Map<string, ConflictPolicy>();
  for (const [name, policy] of Object.entries(config.tables)) {
    const parsed = parseQualifiedName(name);
    if (parsed) tables.set(qualify(parsed.schema, parsed.name), policy);
  }
  return { policy: config.policy, tables };
}

/** Delta columns by table, keyed as Relation.qualifiedName spells it (sinks/postgres/delta-statements.ts). */
export function deltaColumnSettings(config: ConflictsConfig): Map<string, ReadonlySet<string>> {
  const tables = new Map<string, ReadonlySet<string>>();
  for (const [name, columns] of Object.entries(config.deltaColumns)) {
    const parsed = parseQualifiedName(name);
    if (parsed) tables.set(qualify(parsed.schema, parsed.name), new Set(columns));
  }
  return tables;
}
