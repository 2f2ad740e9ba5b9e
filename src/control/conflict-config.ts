/**
 * The `conflicts:` section of the config (docs/conflicts.md):
 *
 *   conflicts:
 *     policy: error            # error | skip | apply_remote | last_update_wins | first_update_wins
 *     tables:
 *       public.audit: skip     # per-table override
 *     detectOriginDiffers: false   # also log update/delete_origin_differs under skip and apply_remote
 *     nodeOrder: [ab, local]   # equal commit times: the writer listed first wins
 *
 * Kept apart from config.ts so the conflict feature's validation is one file.
 */
import { z } from 'zod';
import { parseQualifiedName, qualify } from '../core/sql.js';
import { CONFLICT_POLICIES, type ConflictPolicy, type ConflictSettings } from '../apply/conflict-policy.js';

const conflictPolicy = z.string().transform((value, ctx): ConflictPolicy => {
  if ((CONFLICT_POLICIES as readonly string[]).includes(value)) return value as ConflictPolicy;
  ctx.addIssue({
    code: 'custom',
    message: `"${value}" is not a conflict policy; use one of ${CONFLICT_POLICIES.join(', ')}`,
  });
  return z.NEVER;
});

export const conflictsSchema = z.object({
  policy: conflictPolicy.default('error'),
  tables: z.record(z.string(), conflictPolicy).default({}),
  detectOriginDiffers: z.boolean().default(false),
  /** Writers by name: `local` (rows written on the target outside pgtide) and pgtide subscription names. */
  nodeOrder: z.array(z.string().min(1)).optional(),
}).strict().superRefine((value, ctx) => {
  for (const name of Object.keys(value.tables)) {
    if (!parseQualifiedName(name)) ctx.addIssue({ code: 'custom', path: ['tables', name], message: `"${name}" is not a table name; write schema.table` });
  }
  const order = value.nodeOrder ?? [];
  const repeated = order.find((name, i) => order.indexOf(name) !== i);
  if (repeated !== undefined) ctx.addIssue({ code: 'custom', path: ['nodeOrder'], message: `"${repeated}" is listed twice; each writer has one place in the tie-break order` });
}).default({ policy: 'error', tables: {}, detectOriginDiffers: false });

export type ConflictsConfig = z.infer<typeof conflictsSchema>;

/** The settings the apply side uses: table names as Relation.qualifiedName spells them. */
export function conflictSettings(config: ConflictsConfig): ConflictSettings {
  const tables = new Map<string, ConflictPolicy>();
  for (const [name, policy] of Object.entries(config.tables)) {
    const parsed = parseQualifiedName(name);
    if (parsed) tables.set(qualify(parsed.schema, parsed.name), policy);
  }
  return { policy: config.policy, tables, detectOriginDiffers: config.detectOriginDiffers, ...(config.nodeOrder ? { nodeOrder: config.nodeOrder } : {}) };
}
