/**
 * Checks and catalog reads on the source: that it can do logical replication
 * at all, which publication to follow, and which tables that covers.
 */
import type postgres from 'postgres';
import { fromServerError, PgtideError } from '../control/errors.js';
import { qualify, quoteIdent } from '../changes/relation-cache.js';
import type { QualifiedName } from '../control/config.js';

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
 * FOR ALL TABLES would publish (permanent user tables; leaf partitions, as
 * without publish_via_partition_root), listed by name. FOR ALL TABLES is not
 * used: it also covers every table created later, and the source rejects
 * UPDATE and DELETE on any published table without a replica identity.
 */
export async function defaultPublicationTables(sql: postgres.Sql): Promise<{ readonly tables: readonly QualifiedName[]; readonly withoutIdentity: readonly QualifiedName[] }> {
  const rows = await sql.unsafe<{ schema: string; name: string; usable: boolean }[]>(`
    SELECT n.nspname AS schema, c.relname AS name,
           (c.relreplident = 'f' OR (c.relreplident IN ('d', 'i') AND EXISTS (
              SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisreplident OR (c.relreplident = 'd' AND i.indisprimary))))) AS usable
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND c.oid >= 16384
       AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
       -- pgtide's own state is per node (a source may also be a pgtide target).
       AND n.nspname <> 'pgtide'
     ORDER BY 1, 2`).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  return {
    tables: rows.map((r) => ({ schema: r.schema, name: r.name })),
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
}

export async function publishedTables(sql: postgres.Sql, publication: string): Promise<PublishedTable[]> {
  try {
    const rows = await sql.unsafe<{ schema: string; name: string; ident: string; has_key: boolean }[]>(`
      SELECT p.schemaname AS schema, p.tablename AS name, c.relreplident AS ident,
             EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)) AS has_key
        FROM pg_publication_tables p
        JOIN pg_namespace n ON n.nspname = p.schemaname
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
       WHERE p.pubname = $1
         -- pgtide's own state is per node; replicating it would overwrite the target's.
         AND p.schemaname <> 'pgtide'
       ORDER BY 1, 2`, [publication]);
    const ident = { d: 'default', n: 'nothing', f: 'full', i: 'index' } as const;
    return rows.map((r) => ({ schema: r.schema, name: r.name, replicaIdentity: ident[r.ident as keyof typeof ident] ?? 'default', hasKey: r.has_key }));
  } catch (error) {
    throw fromServerError(error, 'source');
  }
}

export async function slotExists(sql: postgres.Sql, slot: string): Promise<{ exists: boolean; active: boolean; plugin: string | null }> {
  const [row] = await sql.unsafe<{ active: boolean; plugin: string | null }[]>(`SELECT active, plugin FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  return row ? { exists: true, active: row.active, plugin: row.plugin } : { exists: false, active: false, plugin: null };
}
