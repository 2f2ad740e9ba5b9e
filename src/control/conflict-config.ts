/**
 * The `conflicts:` section of the config (docs/conflicts.md):
 *
 *   conflicts:
 *     policy: error            # error | skip | apply_remote
 *     tables:
 *       public.audit: skip     # per-table override
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

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** '90s', '30m', '1h', '2d' → milliseconds. */
const duration = z.string().default('1h').transform((value, ctx): number => {
  const match = /^(\d+)\s*([smhd])$/.exec(value.trim());
  if (match) return Number(match[1]) * DURATION_UNITS_MS[match[2]!]!;
  ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration; write a number and a unit: 90s, 30m, 1h or 2d` });
  return z.NEVER;
});

export const conflictsSchema = z.object({
  policy: conflictPolicy.default('error'),
  tables: z.record(z.string(), conflictPolicy).default({}),
  /** Tombstones of applied deletes, for update_deleted (docs/conflicts.md). */
  tombstones: z.boolean().default(false),
  /** How long a tombstone is kept: longer than any edge lags behind another. */
  tombstoneRetention: duration,
}).strict().superRefine((value, ctx) => {
  for (const name of Object.keys(value.tables)) {
    if (!parseQualifiedName(name)) ctx.addIssue({ code: 'custom', path: ['tables', name], message: `"${name}" is not a table name; write schema.table` });
  }
}).default({ policy: 'error', tables: {}, tombstones: false, tombstoneRetention: 3_600_000 });

export type ConflictsConfig = z.infer<typeof conflictsSchema>;

/** The settings the apply side uses: table names as Relation.qualifiedName spells them. */
export function conflictSettings(config: ConflictsConfig): ConflictSettings {
  const tables = new Map<string, ConflictPolicy>();
  for (const [name, policy] of Object.entries(config.tables)) {
    const parsed = parseQualifiedName(name);
    if (parsed) tables.set(qualify(parsed.schema, parsed.name), policy);
  }
  return { policy: config.policy, tables, ...(config.tombstones ? { tombstones: { retentionMs: config.tombstoneRetention } } : {}) };
}
