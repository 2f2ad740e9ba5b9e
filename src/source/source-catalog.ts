/**
 * Checks and catalog reads on the source: that it can do logical replication
 * at all, which publication to follow, and which tables that covers.
 */
import type postgres from 'postgres';
import { fromServerError, PgtideError } from '../core/errors.js';
import { qualify, quoteIdent, type QualifiedName, textArrayLiteral } from '../core/sql.js';

export interface SourceInfo {
  readonly versionNum: number;
  readonly systemId: string;
}

export async function checkSource(sql: postgres.Sql): Promise<SourceInfo> {
  let row: { version_num: string; wal_level: string; can_replicate: boolean; system_id: string } | undefined;
  try {
    [row] = await sql.unsafe(`
      SELECT current_setting('server_version_num') AS version_num,
             current_setting('wal_level') AS wal_level,
             (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS can_replicate,
             (SELECT system_identifier::text FROM pg_control_system()) AS system_id`);
  } catch (error) {
    throw fromServerError(error, 'source');
  }
  if (!row) throw new PgtideError('INTERNAL', 'source returned no settings');
  const versionNum = Number(row.version_num);
  if (versionNum < 140000) {
    throw new PgtideError('UNSUPPORTED_VERSION', `the source runs PostgreSQL ${Math.floor(versionNum / 10000)}; pgtide supports sources from PostgreSQL 14 to 18. Upgrade the source first.`);
  }
  if (row.wal_level !== 'logical') {
    throw new PgtideError('WAL_LEVEL_NOT_LOGICAL', `the source has wal_level = ${row.wal_level}; logical replication needs wal_level = logical. Run ALTER SYSTEM SET wal_level = logical on the source and restart it.`);
  }
  if (!row.can_replicate) {
    throw new PgtideError('PERMISSION_DENIED', `the source user lacks the REPLICATION attribute. Run ALTER ROLE <user> REPLICATION on the source (see docs/privileges.md).`);
  }
  return { versionNum, systemId: row.system_id };
}

export async function publicationExists(sql: postgres.Sql, publication: string): Promise<boolean> {
  const rows = await sql.unsafe(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [publication]).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  return rows.length > 0;
}

/**
 * The tables of the default publication (no `tables:`, no `publication:`): what
 * FOR ALL TABLES would publish (permanent user tables), listed by name; a
 * partitioned table by its root, so that a partition created or attached later
 * is published too (its rows still travel under the leaf's name, as without
 * publish_via_partition_root, and DDL capture follows the partitions of a
 * listed root). FOR ALL TABLES is not used: it also covers every table created
 * later, and the source rejects UPDATE and DELETE on any published table
 * without a replica identity. That check applies to the leaves, which are
 * what the source writes, so `withoutIdentity` names leaves.
 */
export async function defaultPublicationTables(sql: postgres.Sql): Promise<{ readonly tables: readonly QualifiedName[]; readonly withoutIdentity: readonly QualifiedName[] }> {
  const rows = await sql.unsafe<{ schema: string; name: string; root: boolean; usable: boolean }[]>(`
    WITH roots AS (
      SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p' AND c.oid >= 16384
         AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
         -- pgtide's own state is per node (a source may also be a pgtide target).
         AND n.nspname <> 'pgtide')
    , members AS (
      -- pg_partition_tree lists nothing for a plain table: it stands for itself.
      SELECT r.oid, true AS root FROM roots r
      UNION ALL
      SELECT t.relid, false FROM roots r CROSS JOIN LATERAL pg_partition_tree(r.oid) t WHERE t.level > 0)
    SELECT n.nspname AS schema, c.relname AS name, m.root,
           (c.relkind <> 'r' OR c.relreplident = 'f' OR (c.relreplident IN ('d', 'i') AND EXISTS (
              SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisreplident OR (c.relreplident = 'd' AND i.indisprimary))))) AS usable
      FROM members m JOIN pg_class c ON c.oid = m.oid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE m.root OR c.relkind = 'r'
     ORDER BY 1, 2`).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  return {
    tables: rows.filter((r) => r.root).map((r) => ({ schema: r.schema, name: r.name })),
    withoutIdentity: rows.filter((r) => !r.usable).map((r) => ({ schema: r.schema, name: r.name })),
  };
}

/** Creates the publication pgtide manages, for these tables (none: an empty publication). */
export async function createPublication(sql: postgres.Sql, publication: string, tables: readonly QualifiedName[]): Promise<void> {
  if (tables.length > 0) {
    const missing: string[] = [];
    for (const t of tables) {
      const [found] = await sql.unsafe(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualify(t.schema, t.name)]);
      if (!found?.ok) missing.push(qualify(t.schema, t.name));
    }
    if (missing.length) {
      throw new PgtideError('TABLE_MISSING_ON_SOURCE', `table(s) ${missing.join(', ')} listed in the config do not exist on the source. Fix the names under \`tables:\` (quote mixed-case names, e.g. '"Sales"."Order"').`);
    }
  }
  const target = tables.length > 0 ? `FOR TABLE ${tables.map((t) => qualify(t.schema, t.name)).join(', ')}` : '';
  try {
    await sql.unsafe(`CREATE PUBLICATION ${quoteIdent(publication)} ${target}`);
  } catch (error) {
    const mapped = fromServerError(error, 'source');
    if (mapped.sqlState === '42501') {
      throw new PgtideError('PERMISSION_DENIED', `the source user may not create publication "${publication}" (FOR TABLE needs ownership of each table). Create it as a privileged user, then set \`publication: ${publication}\` in the config.`, { sqlState: mapped.sqlState, cause: error });
    }
    throw mapped;
  }
}

export interface PublishedTable extends QualifiedName {
  readonly replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  readonly hasKey: boolean;
  /**
   * The rows the publications publish (PostgreSQL 15+), as an SQL condition over the
   * table's columns: the filters of every publication OR-ed together. Undefined when
   * any publication publishes the table unfiltered, or on PostgreSQL 14.
   */
  readonly rowFilter?: string;
  /**
   * The columns the publications publish (PostgreSQL 15+), in table order, including
   * stored generated columns a PostgreSQL 18 publication publishes. Undefined on
   * PostgreSQL 14, where every non-generated column is published.
   */
  readonly columns?: readonly string[];
}

interface PublishedRow { schema: string; name: string; ident: string; has_key: boolean; row_filter: string | null; columns: string[] | null; column_lists: number }

/**
 * What tablesync.c reads in fetch_remote_table_info, for several publications at
 * once: a table published unfiltered by one publication is copied whole, else the
 * filters are OR-ed. Column lists must agree: pgoutput and the built-in table sync
 * refuse a table whose publications give it different ones ("cannot use different
 * column lists for table … in different publications", 15+), so pgtide refuses it
 * at start instead of when its first change is streamed. A publication without a
 * column list publishes all its columns, which pg_publication_tables lists; 15-17
 * list generated columns there but never send them, 18 sends the stored ones it
 * lists (publish_generated_columns, or named in a column list).
 */
const PUBLISHED_15 = `
  WITH per AS (
    SELECT p.schemaname, p.tablename, c.oid AS relid, c.relreplident, p.rowfilter,
           (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND (a.attgenerated = '' OR (a.attgenerated = 's' AND $2::int >= 180000))
               AND a.attname = ANY (p.attnames)) AS cols
      FROM pg_publication_tables p
      JOIN pg_namespace n ON n.nspname = p.schemaname
      JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
     WHERE p.pubname = ANY ($1::text[])
       -- pgtide's own state is per node; replicating it would overwrite the target's.
       AND p.schemaname <> 'pgtide')
  SELECT schemaname AS schema, tablename AS name, relreplident AS ident,
         EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = relid AND (i.indisprimary OR i.indisreplident)) AS has_key,
         CASE WHEN bool_or(rowfilter IS NULL) THEN NULL
              ELSE string_agg(DISTINCT '(' || rowfilter || ')', ' OR ') END AS row_filter,
         to_json(min(cols)) AS columns,
         count(DISTINCT cols)::int AS column_lists
    FROM per
   GROUP BY schemaname, tablename, relid, relreplident
   ORDER BY 1, 2`;

const PUBLISHED_14 = `
  SELECT DISTINCT p.schemaname AS schema, p.tablename AS name, c.relreplident AS ident,
         EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)) AS has_key,
         NULL::text AS row_filter, NULL::text AS columns, 1 AS column_lists
    FROM pg_publication_tables p
    JOIN pg_namespace n ON n.nspname = p.schemaname
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
   WHERE p.pubname = ANY ($1::text[])
     AND p.schemaname <> 'pgtide'
   ORDER BY 1, 2`;

/** The tables any of `publications` publishes, each once, with its row filter and column list (see PUBLISHED_15). */
export async function publishedTables(sql: postgres.Sql, publications: readonly string[]): Promise<PublishedTable[]> {
  try {
    const [version] = await sql.unsafe<{ num: number }[]>(`SELECT current_setting('server_version_num')::int AS num`);
    const num = version?.num ?? 0;
    const rows = num >= 150000
      ? await sql.unsafe<PublishedRow[]>(PUBLISHED_15, [textArrayLiteral(publications), num])
      : await sql.unsafe<PublishedRow[]>(PUBLISHED_14, [textArrayLiteral(publications)]);
    const conflicting = rows.filter((r) => r.column_lists > 1).map((r) => qualify(r.schema, r.name));
    if (conflicting.length > 0) {
      throw new PgtideError('UNSUPPORTED_OBJECT', `${conflicting.join(', ')} ${conflicting.length > 1 ? 'are' : 'is'} published with different column lists by the publications ${publications.join(', ')}; PostgreSQL cannot stream such a table to one subscriber (its own subscriptions refuse it too). Give the table the same column list in every publication (or none), or follow fewer publications.`);
    }
    const ident = { d: 'default', n: 'nothing', f: 'full', i: 'index' } as const;
    return rows.map((r) => ({
      schema: r.schema, name: r.name, replicaIdentity: ident[r.ident as keyof typeof ident] ?? 'default', hasKey: r.has_key,
      ...(r.row_filter !== null ? { rowFilter: r.row_filter } : {}),
      ...(r.columns !== null ? { columns: r.columns } : {}),
    }));
  } catch (error) {
    throw fromServerError(error, 'source');
  }
}

export async function slotExists(sql: postgres.Sql, slot: string): Promise<{ exists: boolean; active: boolean; plugin: string | null }> {
  const [row] = await sql.unsafe<{ active: boolean; plugin: string | null }[]>(`SELECT active, plugin FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  return row ? { exists: true, active: row.active, plugin: row.plugin } : { exists: false, active: false, plugin: null };
}
