/**
 * The pgtide configuration: a YAML file validated with zod.
 *
 * Connection strings may reference environment variables as `${NAME}` so that
 * passwords stay out of files. Validation errors name the field and the fix;
 * connection strings are redacted wherever they could appear in a message.
 */
import { readFileSync, existsSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { ConfigError, PgtideError, redact } from '../core/errors.js';
import { parseConninfo } from '../pg/conninfo.js';
import { parseQualifiedName } from '../core/sql.js';
import { tlsSetting } from '../pg/connect.js';
import { DEFAULT_SPLIT_THRESHOLD } from '../copy/plan.js';
import { originsSetting, sourceTagSetting } from './topology-config.js';
import { ndjsonRefusals, targetSchema, withTargetDefaults } from './target-config.js';
import { conflictsSchema, resolveResolverPaths } from './conflict-config.js';
import path from 'node:path';

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 };

/** Accepts 67108864, "64MB", "64 MiB", "512kB". */
const byteSize = z.union([z.number().int().positive(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)\s*$/i.exec(value);
  const unit = match?.[2]?.toLowerCase().replace('i', '') || 'b';
  const factor = SIZE_UNITS[unit];
  if (!match || factor === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size; write it like 64MB or 67108864` });
    return z.NEVER;
  }
  return Math.round(Number(match[1]) * factor);
});

/** A libpq connection string (URL or key=value), checked now (TLS files included) so a bad one names its field. */
const connectionUrl = z.string().min(1).superRefine((value, ctx) => {
  try {
    tlsSetting(parseConninfo(value));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    ctx.addIssue({ code: 'custom', message: `${error.message} (write a URL such as postgres://user@host:5432/dbname or key=value pairs such as host=db1 dbname=shop; see docs/configuration.md)` });
  }
});

/** PostgreSQL identifiers we create (slot, publication, origin) must be simple lower-case names. */
const simpleName = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'use lower-case letters, digits and _ (at most 63), starting with a letter or _');

/** A table named as schema.table; either part may be double-quoted to keep case, spaces, dots or quotes. */
const tableName = z.string().min(1).transform((value, ctx) => {
  const parsed = parseQualifiedName(value);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a table name; write schema.table, quoting parts with double quotes when needed, e.g. '"My Schema"."Order Items"'` });
    return z.NEVER;
  }
  return parsed;
});

export const configSchema = z.object({
  /** Names this replication: the replication origin and state rows on the target are keyed by it. */
  name: simpleName.default('pgtide'),
  source: z.object({ url: connectionUrl }).strict(),
  /** A PostgreSQL database (`url`; the default kind) or an NDJSON file (`kind: ndjson`); see target-config.ts. */
  target: targetSchema(connectionUrl),
  /**
   * Existing publication(s) to follow; a list works as CREATE SUBSCRIPTION … PUBLICATION a, b does.
   * When absent, pgtide creates `<name>_pub` for `tables` (or all tables).
   */
  publication: z.union([simpleName, z.array(simpleName).min(1)]).optional(),
  tables: z.array(tableName).optional(),
  slot: simpleName.optional(),
  copy: z.object({
    enabled: z.boolean().default(true),
    parallelism: z.number().int().min(1).max(64).default(2),
    splitThresholdBytes: byteSize.default(DEFAULT_SPLIT_THRESHOLD),
    /** Drop plain secondary indexes of a table copied whole and build them after its COPY, in the same transaction. */
    rebuildIndexes: z.boolean().default(true),
    /**
     * Empty each target table before copying into it. Off (the default), rows that exist
     * only on the target are kept, as CREATE SUBSCRIPTION keeps them.
     */
    truncateFirst: z.boolean().default(false),
  }).strict().default({ enabled: true, parallelism: 2, splitThresholdBytes: DEFAULT_SPLIT_THRESHOLD, rebuildIndexes: true, truncateFirst: false }),
  apply: z.object({
    /** Source transactions grouped into one target transaction at most. */
    batchMaxTransactions: z.number().int().min(1).default(1000),
    /** Changes in one target transaction at most (a single larger source transaction is never split). */
    batchMaxChanges: z.number().int().min(1).default(20000),
    /** A batch is flushed once its oldest transaction waited this long. */
    batchMaxAgeMs: z.number().int().min(0).default(10),
    /** Fold changes to the same key within a batch; replays in exact order if that meets a unique violation. */
    netEffect: z.boolean().default(true),
    /**
     * Apply large streamed transactions while they stream (on their own connection), like the
     * built-in `streaming = parallel`, instead of buffering them (and spilling past memoryCap)
     * until commit. Off: everything is applied at commit, on one connection.
     */
    streamedApply: z.boolean().default(true),
    /**
     * Insert runs of at least this many rows are sent as COPY FROM STDIN instead of
     * INSERT … unnest; 0 (the default) never. A COPY costs the target less per row but stops
     * the statement pipeline for a round trip; end to end it measured no faster here (the
     * target was not the bottleneck), so it is for targets short of CPU. See ARCHITECTURE.md.
     */
    copyMinRows: z.number().int().min(0).default(0),
    /** A deterministic apply error: stop (default), or quarantine the failing source transaction and go on (docs/quarantine.md). */
    onDeterministicError: z.enum(['stop', 'quarantine']).default('stop'),
  }).strict().default({ batchMaxTransactions: 1000, batchMaxChanges: 20000, batchMaxAgeMs: 10, netEffect: true, streamedApply: true, copyMinRows: 0, onDeterministicError: 'stop' }),
  /** Memory for streamed (in-progress) transactions; beyond it changes are spilled to disk. */
  memoryCap: byteSize.default(64 * 1024 * 1024),
  spillDir: z.string().optional(),
  /** Seconds between standby status updates; must stay well inside the source's wal_sender_timeout. */
  statusIntervalMs: z.number().int().min(100).default(10_000),
  /** A connection that delivers nothing (not even a keepalive) for this long is treated as dead. */
  receiveTimeoutMs: z.number().int().min(1000).default(60_000),
  /** Idle this long: emit a heartbeat message on the source (0: never). Default: statusIntervalMs. */
  heartbeatIntervalMs: z.number().int().min(0).optional(),
  /**
   * Watchdog: nothing read from the stream and nothing applied for this long while work is
   * pending is a stall (a wait on a dead connection), turned into a reconnect.
   */
  stallTimeoutMs: z.number().int().min(1000).default(120_000),
  sequences: z.object({
    enabled: z.boolean().default(true),
    intervalMs: z.number().int().min(100).default(5000),
    ahead: z.number().int().min(0).default(0),
    include: z.array(tableName).default([]),
  }).strict().default({ enabled: true, intervalMs: 5000, ahead: 0, include: [] }),
  schema: z.object({
    /** Before the copy, create on the target what the replicated tables need and it lacks (as `pgtide schema copy`). */
    bootstrap: z.boolean().default(false),
  }).strict().default({ bootstrap: false }),
  metrics: z.object({ port: z.number().int().min(0).max(65535).optional() }).strict().default({}),
  /** Which replication origins this edge forwards (loop prevention; topology-config.ts). */
  origins: originsSetting,
  /** Consolidation: a target-only column filled with this source's tag (topology-config.ts). */
  sourceTag: sourceTagSetting,
  /** How conflicts on the target are resolved and logged (conflict-config.ts, docs/conflicts.md). */
  conflicts: conflictsSchema,
  /** DDL replication (docs/ddl.md). */
  ddl: z.object({
    /** Install the capture triggers on the source at start (needs a superuser there); `pgtide ddl install` does it by hand. */
    capture: z.boolean().default(false),
    /** Schemas where a table created on the source (with a primary key) joins the publication; default: those of the replicated tables. */
    newTableSchemas: z.array(z.string().min(1)).optional(),
    /** Drops and narrowing type changes: apply them, skip them (recorded in pgtide.ddl_unhandled), or stop until `pgtide ddl skip`. */
    destructive: z.enum(['apply', 'skip', 'pause']).default('apply'),
    /** A change that fails on the target: stop (naming it; `pgtide ddl skip` moves past it), or skip it and go on. */
    onError: z.enum(['stop', 'skip']).default('stop'),
    /** Without capture: add a column the source sends and the target lacks (built-in types only), instead of stopping with COLUMN_MISMATCH. */
    addMissingColumns: z.boolean().default(true),
    /** A column added with a volatile default or as identity to a table with rows: copy the table again, or stop. */
    rewriteVolatile: z.enum(['resync', 'error']).default('resync'),
  }).strict().default({ capture: false, destructive: 'apply', onError: 'stop', addMissingColumns: true, rewriteVolatile: 'resync' }),
}).strict().superRefine((config, ctx) => {
  for (const issue of ndjsonRefusals(config)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
});

export type PgtideConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Replaces `${NAME}` with the environment variable, failing clearly when it is unset. */
function expandEnv(value: unknown, path: string): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const found = process.env[name];
      if (found === undefined) throw new ConfigError(`${path} uses \${${name}}, but the environment variable ${name} is not set. Export it before starting pgtide.`);
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((item, index) => expandEnv(item, `${path}[${index}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, expandEnv(item, path ? `${path}.${key}` : key)]));
  }
  return value;
}

export function parseConfig(input: unknown, origin = 'config'): PgtideConfig {
  const expanded = withTargetDefaults(expandEnv(input ?? {}, ''));
  const result = configSchema.safeParse(expanded);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const field = issue.path.length ? issue.path.join('.') : '(top level)';
      let message = issue.message;
      if (issue.code === 'unrecognized_keys') message = `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}; remove them or check the spelling (see docs/configuration.md)`;
      if (issue.code === 'invalid_type' && /received undefined/i.test(issue.message)) message = 'is required';
      return `  - ${field}: ${redact(message)}`;
    });
    throw new ConfigError(`${origin} is not valid:\n${lines.join('\n')}`);
  }
  return result.data;
}

export function loadConfigFile(file: string): PgtideConfig {
  if (!existsSync(file)) {
    throw new PgtideError('CONFIG_NOT_FOUND', `config file ${file} does not exist. Pass --config <file>; see docs/configuration.md for an example.`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (error) {
    const detail = error instanceof YAMLParseError ? error.message : String(error);
    throw new ConfigError(`${file} is not valid YAML: ${redact(detail)}`);
  }
  const config = parseConfig(raw, file);
  // Resolver module paths are relative to the config file (docs/conflicts.md, "Custom resolver").
  return { ...config, conflicts: resolveResolverPaths(config.conflicts, path.dirname(path.resolve(file))) };
}

/** Derived names, so every component agrees on them. */
export function slotName(config: PgtideConfig): string {
  return config.slot ?? `${config.name}_slot`;
}
/** Every publication followed, in config order (one when `publication:` is a name or absent). */
export function publicationNames(config: PgtideConfig): readonly string[] {
  const { publication } = config;
  if (publication === undefined) return [`${config.name}_pub`];
  return typeof publication === 'string' ? [publication] : [...new Set(publication)];
}
/** One name for records and messages: the publication, or the list joined with commas. */
export function publicationName(config: PgtideConfig): string {
  return publicationNames(config).join(',');
}
/**
 * Replication origins are shared by every database of the target cluster, so the
 * name carries the target database's OID: two subscriptions with one `name`
 * into two databases do not share an origin. (Before, it was `pgtide_<name>`;
 * the progress of record is pgtide.apply_progress, so a start under the new
 * name simply creates the origin and moves it to that position.)
 */
export function originName(config: PgtideConfig, targetDatabaseOid: number): string {
  return `pgtide_${config.name}_${targetDatabaseOid}`;
}
/** Streamed transactions applied at once on connections of their own (more are buffered). */
export const STREAMED_APPLY_CONNECTIONS = 2;
/**
 * The origin a streamed transaction's own connection writes under until its commit takes
 * over `originName` (one per connection, `slot` < the streamed-apply connections).
 */
export function streamedOriginName(config: PgtideConfig, targetDatabaseOid: number, slot: number): string {
  return `${originName(config, targetDatabaseOid)}_s${slot}`;
}
/** The origin name of pgtide versions before it carried the database OID. */
export function legacyOriginName(config: PgtideConfig): string {
  return `pgtide_${config.name}`;
}
