/**
 * The `conflicts:` section of the config (docs/conflicts.md):
 *
 *   conflicts:
 *     policy: error            # error | skip | apply_remote | last_update_wins | first_update_wins | custom
 *     resolver: ./resolver.js  # the module of `custom` (relative to the config file)
 *     tables:
 *       public.audit: skip     # per-table override
 *       public.accounts: { resolver: ./accounts.js }   # custom, with its own module
 *     detectOriginDiffers: false   # also log update/delete_origin_differs under skip and apply_remote
 *     nodeOrder: [ab, local]   # equal commit times: the writer listed first wins
 *     detect: true             # false: no detection at all (policy error only; a benchmark baseline)
 *     deltaColumns:            # columns updated by difference (counters; REPLICA IDENTITY FULL)
 *       public.acct: [balance]
 *
 * Kept apart from config.ts so the conflict feature's validation is one file.
 */
import { z } from 'zod';
import { parseQualifiedName, qualify } from '../core/sql.js';
import path from 'node:path';
import { CONFLICT_POLICIES, type ConflictPolicy, type ConflictSettings, type NamedResolver } from '../apply/conflict-policy.js';

const conflictPolicy = z.string().transform((value, ctx): ConflictPolicy => {
  if ((CONFLICT_POLICIES as readonly string[]).includes(value)) return value as ConflictPolicy;
  ctx.addIssue({
    code: 'custom',
    message: `"${value}" is not a conflict policy; use one of ${CONFLICT_POLICIES.join(', ')}`,
  });
  return z.NEVER;
});

/**
 * A per-table entry: a policy, or `{ resolver: path }` (custom with its own module; `policy: custom`
 * may be written too). Not a z.union: a union reports "Invalid input" instead of the policy's message.
 */
const tableObject = z.object({ policy: conflictPolicy.optional(), resolver: z.string().min(1) }).strict();
type TableEntry = ConflictPolicy | z.infer<typeof tableObject>;
const tableEntry = z.unknown().transform((value, ctx): TableEntry => {
  const parsed = typeof value === 'string' ? conflictPolicy.safeParse(value) : tableObject.safeParse(value);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  if (typeof value !== 'string' && (value === null || typeof value !== 'object')) {
    ctx.addIssue({ code: 'custom', message: 'write a policy (error, skip, apply_remote, custom) or { resolver: ./module.js }' });
  }
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
  detectOriginDiffers: z.boolean().default(false),
  /** Writers by name: `local` (rows written on the target outside pgtide) and pgtide subscription names. */
  nodeOrder: z.array(z.string().min(1)).optional(),
  /** The resolver module of `custom` tables without one of their own (conflict-resolver.ts). */
  resolver: z.string().min(1).optional(),
  /** false: no detection (plain statements: a missing row counted and skipped, a duplicate key stops); policy error only. */
  detect: z.boolean().optional(),
  tables: z.record(z.string(), tableEntry).default({}),
  /** Tombstones of applied deletes, for update_deleted (docs/conflicts.md). */
  tombstones: z.boolean().default(false),
  /** How long a tombstone is kept: longer than any edge lags behind another. */
  tombstoneRetention: duration,
  deltaColumns: z.record(z.string(), z.array(z.string().min(1)).min(1)).default({}),
}).strict().superRefine((value, ctx) => {
  for (const [name, entry] of Object.entries(value.tables)) {
    if (!parseQualifiedName(name)) ctx.addIssue({ code: 'custom', path: ['tables', name], message: `"${name}" is not a table name; write schema.table` });
    if (typeof entry === 'object' && entry.policy !== undefined && entry.policy !== 'custom') {
      ctx.addIssue({ code: 'custom', path: ['tables', name], message: `a resolver is given with policy ${entry.policy}; a resolver decides only under policy custom (drop the policy, or the resolver)` });
    }
    if (entry === 'custom' && value.resolver === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tables', name], message: 'policy custom needs a resolver module: set conflicts.resolver, or write { resolver: ./module.js } for this table (docs/conflicts.md, "Custom resolver")' });
    }
  }
  if (value.policy === 'custom' && value.resolver === undefined) {
    ctx.addIssue({ code: 'custom', path: ['resolver'], message: 'policy custom needs a resolver module: set conflicts.resolver to the path of a module whose default export decides each conflict (docs/conflicts.md, "Custom resolver")' });
  }
  if (value.detect === false) {
    const policies = [value.policy, ...Object.values(value.tables).map((e) => (typeof e === 'object' ? 'custom' : e))];
    if (policies.some((p) => p !== 'error')) {
      ctx.addIssue({ code: 'custom', path: ['detect'], message: 'detect: false turns conflict detection off, which only policy error can do without (every other policy resolves what detection finds); remove detect, or set every policy to error' });
    }
  }
  const order = value.nodeOrder ?? [];
  const repeated = order.find((name, i) => order.indexOf(name) !== i);
  if (repeated !== undefined) ctx.addIssue({ code: 'custom', path: ['nodeOrder'], message: `"${repeated}" is listed twice; each writer has one place in the tie-break order` });
  for (const name of Object.keys(value.deltaColumns)) {
    if (!parseQualifiedName(name)) ctx.addIssue({ code: 'custom', path: ['deltaColumns', name], message: `"${name}" is not a table name; write schema.table` });
  }
}).default({ policy: 'error', tables: {}, detectOriginDiffers: false, tombstones: false, tombstoneRetention: 3_600_000, deltaColumns: {} });

export type ConflictsConfig = z.infer<typeof conflictsSchema>;

/**
 * The settings the apply side uses: table names as Relation.qualifiedName
 * spells them, and the loaded resolver modules (control/resolver-loader.ts).
 */
export function conflictSettings(config: ConflictsConfig, resolvers: LoadedResolvers = EMPTY_RESOLVERS): ConflictSettings {
  const tables = new Map<string, ConflictPolicy>();
  const tableResolvers = new Map<string, NamedResolver>();
  for (const [name, entry] of Object.entries(config.tables)) {
    const parsed = parseQualifiedName(name);
    if (!parsed) continue;
    const qualified = qualify(parsed.schema, parsed.name);
    tables.set(qualified, typeof entry === 'object' ? 'custom' : entry);
    const resolver = typeof entry === 'object' ? resolvers.byPath.get(entry.resolver) : undefined;
    if (resolver) tableResolvers.set(qualified, resolver);
  }
  const resolver = config.resolver === undefined ? undefined : resolvers.byPath.get(config.resolver);
  return {
    policy: config.policy, tables, resolver, tableResolvers, detect: config.detect !== false,
    detectOriginDiffers: config.detectOriginDiffers, ...(config.nodeOrder ? { nodeOrder: config.nodeOrder } : {}),
    ...(config.tombstones ? { tombstones: { retentionMs: config.tombstoneRetention } } : {}),
  };
}

/** Resolver modules by the path the config names them with. */
export interface LoadedResolvers {
  readonly byPath: ReadonlyMap<string, NamedResolver>;
}

const EMPTY_RESOLVERS: LoadedResolvers = { byPath: new Map() };

/** Every resolver module path the config names (pipeline and tables), as written. */
export function resolverPaths(config: ConflictsConfig): string[] {
  const paths = new Set<string>();
  if (config.resolver !== undefined) paths.add(config.resolver);
  for (const entry of Object.values(config.tables)) if (typeof entry === 'object') paths.add(entry.resolver);
  return [...paths];
}

/** Resolver paths relative to the config file's folder made absolute (loadConfigFile). */
export function resolveResolverPaths(config: ConflictsConfig, configDir: string): ConflictsConfig {
  const abs = (p: string): string => path.resolve(configDir, p);
  return {
    ...config,
    ...(config.resolver !== undefined ? { resolver: abs(config.resolver) } : {}),
    tables: Object.fromEntries(Object.entries(config.tables).map(([name, entry]) => [name, typeof entry === 'object' ? { ...entry, resolver: abs(entry.resolver) } : entry])),
  };
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
