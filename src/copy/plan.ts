/**
 * Planning the initial copy: both catalogs are read and every table checked
 * before anything is touched on the target; then the jobs are ordered (largest
 * first) and large tables cut into ctid ranges when they may be.
 */
import type postgres from 'postgres';
import { PgtideError } from '../core/errors.js';
import { listNames, qualify, quoteIdent } from '../core/sql.js';
import { tableMissingOnTarget } from '../core/missing-table.js';
import type { CopyFormat, CopyOptions } from './copy-options.js';
import { TableJob, type BlockRange, type SourceMeta, type TargetMeta, type WorkItem } from './table-job.js';
import { copyError } from './copy-errors.js';
import { targetEmpty } from './index-rebuild.js';

/** Config default too (control/config.ts reads it from here). */
export const DEFAULT_SPLIT_THRESHOLD = 256 * 1024 * 1024;
/** More ranges than this only add per-statement overhead. */
const MAX_RANGES_PER_TABLE = 256;

/** Planning's short-lived catalog connections, tracked by the copy so that a failure cuts them too. */
export interface PlanConnections {
  open(url: string): postgres.Sql;
  close(sql: postgres.Sql): Promise<void>;
}

export interface CopyPlan {
  readonly jobs: readonly TableJob[];
  /** Whole tables and ranges, in the order workers take them. */
  readonly queue: readonly WorkItem[];
  readonly sourceVersion: number;
  readonly targetVersion: number;
}

/** Reads both catalogs and checks every table before anything is touched on the target. */
export async function planCopy(options: CopyOptions, parallelism: number, connections: PlanConnections): Promise<CopyPlan> {
  const { tables } = options;
  if (tables.length === 0) return { jobs: [], queue: [], sourceVersion: 0, targetVersion: 0 };
  const seen = new Set<string>();
  for (const spec of tables) {
    const qualified = qualify(spec.schema, spec.name);
    // Two jobs on one table would empty it under each other's feet.
    if (seen.has(qualified)) throw new PgtideError('CONFIG_INVALID', `table ${qualified} is listed twice for the initial copy.`);
    seen.add(qualified);
  }
  if (!/^[0-9A-Fa-f-]+$/.test(options.snapshotName)) {
    throw new PgtideError('INTERNAL', `not an exported snapshot name: ${JSON.stringify(options.snapshotName)}`);
  }
  const names = tables.map((t) => [t.schema, t.name]);
  const source = connections.open(options.sourceUrl);
  const target = connections.open(options.targetUrl);
  const [sourceRows, targetRows] = await Promise.all([
    sourceMeta(source, names).catch((error: unknown) => { throw copyError(error, 'source'); }),
    targetMeta(target, names).catch((error: unknown) => { throw copyError(error, 'target'); }),
  ]);
  await Promise.all([connections.close(source), connections.close(target)]);
  const versions = { source: sourceRows.version, target: targetRows.version };

  const blockSize = sourceRows.blockSize;
  const missingSource: string[] = [];
  const missingTarget: string[] = [];
  const notTables: string[] = [];
  const problems: string[] = [];
  const jobs: TableJob[] = [];
  tables.forEach((spec, index) => {
    const qualified = qualify(spec.schema, spec.name);
    const s = sourceRows.rows[index];
    const t = targetRows.rows[index];
    if (!s?.relkind) { missingSource.push(qualified); return; }
    if (!t?.relkind) { missingTarget.push(qualified); return; }
    if (s.relkind !== 'r' && s.relkind !== 'p') { notTables.push(`${qualified} on the source (relkind ${s.relkind})`); return; }
    if (t.relkind !== 'r' && t.relkind !== 'p') { notTables.push(`${qualified} on the target (relkind ${t.relkind})`); return; }
    const columns = spec.columns ?? s.copy_columns ?? [];
    const sourceColumns = new Set(s.all_columns ?? []);
    const targetColumns = new Set(t.columns ?? []);
    const targetGenerated = new Set(t.generated_columns ?? []);
    for (const column of columns) {
      if (!sourceColumns.has(column)) problems.push(`${qualified}: column ${quoteIdent(column)} does not exist on the source`);
      else if (!targetColumns.has(column)) problems.push(`${qualified}: column ${quoteIdent(column)} does not exist on the target`);
      else if (targetGenerated.has(column) && !(s.copy_columns ?? []).includes(column)) {
        // As PostgreSQL 18's own subscriber, which stops with "incompatible generated column".
        problems.push(`${qualified}: column ${quoteIdent(column)} is published as a generated column (publish_generated_columns = stored, or named in a column list) but is a generated column on the target too, which cannot be written; make it a plain column on the target or stop publishing it`);
      } else if (targetGenerated.has(column)) problems.push(`${qualified}: column ${quoteIdent(column)} is a generated column on the target and cannot be written`);
    }
    for (const { column } of spec.constants ?? []) {
      if (sourceColumns.has(column)) problems.push(`${qualified}: column ${quoteIdent(column)} (sourceTag.column) exists on the source too; the tag column must be one only the target has`);
      else if (!targetColumns.has(column) || targetGenerated.has(column)) problems.push(`${qualified}: column ${quoteIdent(column)} (sourceTag.column) is missing on the target or generated there; add it on the target (ALTER TABLE ${qualified} ADD COLUMN ${quoteIdent(column)} text)`);
    }
    jobs.push(new TableJob(spec, columns, s, t, formatFor(options.format ?? 'auto', versions, columns, s, t), options.truncateFirst === true));
  });
  if (missingSource.length > 0) {
    throw new PgtideError('TABLE_MISSING_ON_SOURCE', `${listNames(missingSource)} ${missingSource.length === 1 ? 'does' : 'do'} not exist on the source. Check the schema and table names (they are case-sensitive) or remove them from the publication.`);
  }
  if (missingTarget.length > 0) throw tableMissingOnTarget(missingTarget);
  if (notTables.length > 0) {
    throw new PgtideError('UNSUPPORTED_OBJECT', `only tables can be copied, and these are not: ${listNames(notTables)}. Replace them with tables or leave them out.`);
  }
  if (problems.length > 0) {
    throw new PgtideError('COLUMN_MISMATCH', `${problems.slice(0, 10).join('; ')}${problems.length > 10 ? `; and ${problems.length - 10} more` : ''}. Make the target tables match the source: 'pgtide schema diff --config <file>' lists every difference and 'pgtide schema copy --apply-diff --config <file>' adds missing columns (or list the columns to copy).`);
  }

  const threshold = options.splitThresholdBytes ?? DEFAULT_SPLIT_THRESHOLD;
  const large = jobs.filter((job) => job.sourceKind === 'r' && job.heapBytes > threshold);
  const split = await splittable(options, large, connections);
  // Largest first: the long copies start early, small tables fill the gaps at the end.
  jobs.sort((a, b) => Math.max(b.heapBytes, b.estimatedBytes) - Math.max(a.heapBytes, a.estimatedBytes));
  const queue: WorkItem[] = [];
  for (const job of jobs) {
    if (split.has(job)) {
      job.ranges = splitRanges(job.heapBytes, blockSize, threshold, parallelism);
      job.remaining = job.ranges.length;
      for (const range of job.ranges) queue.push({ job, range });
    } else {
      job.remaining = 1;
      queue.push({ job, range: undefined });
    }
  }
  return { jobs, queue, sourceVersion: versions.source, targetVersion: versions.target };
}

/**
 * Ranges commit one by one, so a table keeps its target rows only when copied whole:
 * a large table is split only when it is emptied first or is empty on the target now
 * (checked again, under lock, before its first range; see #copyRange).
 */
async function splittable(options: CopyOptions, large: readonly TableJob[], connections: PlanConnections): Promise<Set<TableJob>> {
  const split = new Set(large.filter((job) => job.truncate));
  const check = large.filter((job) => !job.truncate);
  if (check.length === 0) return split;
  const target = connections.open(options.targetUrl);
  try {
    for (const job of check) {
      if (await targetEmpty(target, job)) split.add(job);
    }
  } catch (error) {
    throw copyError(error, 'target');
  } finally {
    await connections.close(target);
  }
  return split;
}

function formatFor(format: CopyFormat | 'auto', versions: { readonly source: number; readonly target: number }, columns: readonly string[], source: SourceMeta, target: TargetMeta): CopyFormat {
  if (format !== 'auto') return format;
  if (Math.floor(versions.source / 10000) !== Math.floor(versions.target / 10000)) return 'text';
  // Below FirstNormalObjectId: built-in, so the same OID means the same type on both servers.
  const builtIn = (oid: number | undefined) => oid !== undefined && oid < 16384;
  const same = columns.every((column) => builtIn(source.types?.[column]) && source.types?.[column] === target.types?.[column]);
  return same ? 'binary' : 'text';
}

async function sourceMeta(sql: postgres.Sql, names: string[][]): Promise<{ rows: SourceMeta[]; blockSize: number; version: number }> {
  const [settings] = await sql<{ block_size: number; version: number }[]>`
    select current_setting('block_size')::int as block_size, current_setting('server_version_num')::int as version`;
  const rows = await sql<SourceMeta[]>`
    select s.ord::int as ord, c.relkind::text as relkind,
      (case when c.relkind = 'p'
        then (select coalesce(sum(greatest(p.reltuples, 0)), 0) from pg_partition_tree(c.oid) t join pg_class p on p.oid = t.relid where t.isleaf)
        else c.reltuples end)::float8 as est_rows,
      (case when c.relkind = 'p'
        then (select coalesce(sum(pg_table_size(t.relid)), 0) from pg_partition_tree(c.oid) t where t.isleaf)
        else pg_table_size(c.oid) end)::float8 as est_bytes,
      (case when c.relkind = 'r' then pg_relation_size(c.oid) else 0 end)::float8 as main_bytes,
      (select json_agg(a.attname order by a.attnum) from pg_attribute a
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = '') as copy_columns,
      (select json_agg(a.attname order by a.attnum) from pg_attribute a
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as all_columns,
      (select json_object_agg(a.attname, a.atttypid::int8) from pg_attribute a
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as types
    from jsonb_array_elements(${sql.json(names)}) with ordinality as s(pair, ord)
    left join pg_namespace n on n.nspname = s.pair->>0
    left join pg_class c on c.relnamespace = n.oid and c.relname = s.pair->>1
    order by s.ord`;
  return { rows: [...rows], blockSize: settings?.block_size ?? 8192, version: settings?.version ?? 0 };
}

async function targetMeta(sql: postgres.Sql, names: string[][]): Promise<{ rows: TargetMeta[]; version: number }> {
  const [settings] = await sql<{ version: number }[]>`select current_setting('server_version_num')::int as version`;
  const rows = await sql<TargetMeta[]>`
    select s.ord::int as ord, c.relkind::text as relkind,
      exists(select 1 from pg_constraint k where k.contype = 'f' and k.confrelid = c.oid and k.conrelid <> c.oid) as referenced,
      (select json_agg(a.attname) from pg_attribute a
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns,
      (select json_agg(a.attname) from pg_attribute a
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated <> '') as generated_columns,
      (select json_object_agg(a.attname, a.atttypid::int8) from pg_attribute a
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as types
    from jsonb_array_elements(${sql.json(names)}) with ordinality as s(pair, ord)
    left join pg_namespace n on n.nspname = s.pair->>0
    left join pg_class c on c.relnamespace = n.oid and c.relname = s.pair->>1
    order by s.ord`;
  return { rows: [...rows], version: settings?.version ?? 0 };
}

export function splitRanges(heapBytes: number, blockSize: number, threshold: number, parallelism: number): BlockRange[] {
  const blocks = Math.ceil(heapBytes / blockSize);
  // At least one range per worker, so a single big table keeps every worker busy.
  const count = Math.min(blocks, MAX_RANGES_PER_TABLE, Math.max(Math.ceil(heapBytes / threshold), parallelism));
  const per = Math.ceil(blocks / count);
  const ranges: BlockRange[] = [];
  for (let from = 0; from < blocks; from += per) {
    // The last range is open-ended: the heap may have grown since we measured it.
    ranges.push({ from, to: from + per >= blocks ? undefined : from + per });
  }
  return ranges;
}
