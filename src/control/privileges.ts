/**
 * Checks, before pgtide creates anything, that the source and target users
 * hold every privilege a start needs, and reports all missing ones at once.
 *
 * Without this each gap surfaced as its own failed start, some only after the
 * slot was made or the copy had run for a while. The check reads the catalogs
 * with has_*_privilege(), which answer for the current user including role
 * membership, so a privilege granted to a group counts. A superuser passes
 * every check. What it cannot see is pg_hba.conf for the replication
 * connection: that is only known by connecting.
 *
 * What is checked mirrors docs/privileges.md; keep the two in step.
 */
import type postgres from 'postgres';
import { publicationName, publicationNames, type PgtideConfig } from './config.js';
import { PgtideError, fromServerError } from '../core/errors.js';
import { discoverSequences } from '../sequences/sequence-catalog.js';
import { qualify, quoteIdent, type QualifiedName } from '../core/sql.js';

export interface MissingPrivilege {
  readonly side: 'source' | 'target';
  /** The statement that grants it, run as a superuser or the object's owner. */
  readonly fix: string;
  /** What needs it. */
  readonly purpose: string;
}

/** The origin functions a start calls (apply-writer.ts); revoked from PUBLIC by PostgreSQL. */
const ORIGIN_FUNCTIONS = [
  'pg_replication_origin_create', 'pg_replication_origin_session_setup', 'pg_replication_origin_session_reset',
  'pg_replication_origin_xact_setup', 'pg_replication_origin_progress', 'pg_replication_origin_advance',
];

const TABLE_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'] as const;

interface RoleRow {
  readonly user: string;
  readonly db: string;
  readonly superuser: boolean;
  readonly replication: boolean;
  readonly create_db: boolean;
  readonly version: number;
}

const ROLE_QUERY = `
  SELECT current_user AS "user", current_database() AS db, r.rolsuper AS superuser, r.rolreplication AS replication,
         has_database_privilege(current_database(), 'CREATE') AS create_db,
         current_setting('server_version_num')::int AS version
    FROM pg_roles r WHERE r.rolname = current_user`;

/** Names given as $1 (schemas) and $2 (names), resolved to relations that exist; missing ones are left to the checks that name them. */
const NAMED_RELATIONS = `
  FROM unnest($1::text[], $2::text[]) AS w(s, r)
  JOIN pg_namespace n ON n.nspname = w.s
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.r`;

/**
 * Throws one PERMISSION_DENIED PgtideError listing every privilege missing on
 * either side, with the statement that grants each. Reads only; creates nothing.
 */
/** `target` undefined: a target that is not a database (NDJSON), where only the source side applies. */
export async function checkPrivileges(source: postgres.Sql, target: postgres.Sql | undefined, config: PgtideConfig): Promise<void> {
  const missing = await findMissingPrivileges(source, target, config);
  if (missing.length === 0) return;
  throw new PgtideError('PERMISSION_DENIED', describeMissing(missing), { retryable: false });
}

export async function findMissingPrivileges(source: postgres.Sql, target: postgres.Sql | undefined, config: PgtideConfig): Promise<MissingPrivilege[]> {
  const onSource = await sourceSide(source, config).catch((e: unknown) => { throw fromServerError(e, 'source'); });
  const onTarget = !target ? [] : await targetSide(target, config, onSource.tables, onSource.sequences).catch((e: unknown) => { throw fromServerError(e, 'target'); });
  return [...onSource.missing, ...onTarget];
}

function describeMissing(missing: readonly MissingPrivilege[]): string {
  const lines = [`the database users lack ${missing.length} privilege(s) pgtide needs; nothing was created. Run these statements as a superuser (or the objects' owner), then start again (see docs/privileges.md):`];
  for (const side of ['source', 'target'] as const) {
    const mine = missing.filter((m) => m.side === side);
    if (mine.length === 0) continue;
    lines.push(`  on the ${side}:`);
    for (const m of mine) lines.push(`    ${m.fix}  -- ${m.purpose}`);
  }
  return lines.join('\n');
}

interface SourceSide {
  readonly missing: MissingPrivilege[];
  /** The leaf tables that will be copied and streamed. */
  readonly tables: readonly QualifiedName[];
  readonly sequences: readonly QualifiedName[];
}

async function sourceSide(sql: postgres.Sql, config: PgtideConfig): Promise<SourceSide> {
  const [role] = await sql.unsafe<RoleRow[]>(ROLE_QUERY);
  if (!role) throw new PgtideError('INTERNAL', 'the source returned no row for the current user');
  const user = quoteIdent(role.user);
  const missing: MissingPrivilege[] = [];
  const add = (fix: string, purpose: string): void => { if (!missing.some((m) => m.fix === fix)) missing.push({ side: 'source', fix, purpose }); };
  if (!role.superuser && !role.replication) add(`ALTER ROLE ${user} REPLICATION;`, 'replication slot and stream');

  const publications = publicationNames(config);
  const publication = publicationName(config);
  const [found] = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM pg_publication WHERE pubname = ANY($1::text[])`, [publications]);
  const exists = found?.n === publications.length;
  let tables: QualifiedName[];
  if (exists) {
    tables = [...await sql.unsafe<{ schema: string; name: string }[]>(
      `SELECT DISTINCT schemaname AS schema, tablename AS name FROM pg_publication_tables WHERE pubname = ANY($1::text[]) AND schemaname <> 'pgtide' ORDER BY 1, 2`, [publications])];
  } else if (config.tables && config.tables.length > 0) {
    const listed = config.tables;
    // FOR TABLE adds partitions and inheritance children too, and the publication lists the
    // plain tables among them (publish_via_partition_root is off): those are copied and applied.
    tables = [...await sql.unsafe<{ schema: string; name: string }[]>(`
      WITH RECURSIVE tree AS (
        SELECT c.oid ${NAMED_RELATIONS}
        UNION
        SELECT h.inhrelid FROM pg_inherits h JOIN tree ON h.inhparent = tree.oid
      )
      SELECT DISTINCT ln.nspname AS schema, l.relname AS name
        FROM tree JOIN pg_class l ON l.oid = tree.oid AND l.relkind = 'r'
        JOIN pg_namespace ln ON ln.oid = l.relnamespace
       ORDER BY 1, 2`, [listed.map((t) => t.schema), listed.map((t) => t.name)])];
    if (!role.superuser) {
      if (!role.create_db) add(`GRANT CREATE ON DATABASE ${quoteIdent(role.db)} TO ${user};`, `creating publication "${publication}" (or create it yourself and set \`publication:\`)`);
      const owners = await sql.unsafe<{ schema: string; name: string; owner: boolean }[]>(
        `SELECT n.nspname AS schema, c.relname AS name, pg_has_role(c.relowner, 'USAGE') AS owner ${NAMED_RELATIONS}`,
        [listed.map((t) => t.schema), listed.map((t) => t.name)]);
      for (const o of owners) {
        if (!o.owner) add(`ALTER TABLE ${qualify(o.schema, o.name)} OWNER TO ${user};`, `adding it to publication "${publication}" (or create the publication yourself and set \`publication:\`)`);
      }
    }
  } else {
    // No `tables:`: pgtide creates the publication FOR TABLE with every user table
    // (defaultPublicationTables), which takes CREATE on the database and ownership of each.
    // The publication lists plain tables and partitioned roots (whose ownership it takes);
    // the copy reads plain tables and leaf partitions (whose SELECT it takes).
    const all = await sql.unsafe<{ schema: string; name: string; owner: boolean; listed: boolean; read: boolean }[]>(`
      SELECT n.nspname AS schema, c.relname AS name, pg_has_role(c.relowner, 'USAGE') AS owner,
             NOT c.relispartition AS listed, c.relkind = 'r' AS read
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgtide') AND n.nspname NOT LIKE 'pg\\_%'
       ORDER BY 1, 2`);
    tables = all.filter((t) => t.read).map((t) => ({ schema: t.schema, name: t.name }));
    if (!role.superuser) {
      if (!role.create_db) add(`GRANT CREATE ON DATABASE ${quoteIdent(role.db)} TO ${user};`, `creating publication "${publication}" (or create it yourself and set \`publication:\`)`);
      for (const o of all.filter((t) => t.listed)) {
        if (!o.owner) add(`ALTER TABLE ${qualify(o.schema, o.name)} OWNER TO ${user};`, `adding it to publication "${publication}" (or create the publication yourself and set \`publication:\`)`);
      }
    }
  }

  const sequences = config.sequences.enabled
    ? (await discoverSequences(sql, { tables: exists || (config.tables && config.tables.length > 0) ? tables : 'all', include: config.sequences.include }, 'source')).sequences
    : [];
  if (role.superuser) return { missing, tables, sequences };

  if (config.copy.enabled) {
    const rows = await sql.unsafe<{ schema: string; name: string; usage: boolean; select: boolean }[]>(`
      SELECT n.nspname AS schema, c.relname AS name, has_schema_privilege(n.oid, 'USAGE') AS usage, has_table_privilege(c.oid, 'SELECT') AS "select"
      ${NAMED_RELATIONS} ORDER BY 1, 2`, [tables.map((t) => t.schema), tables.map((t) => t.name)]);
    for (const r of rows) {
      if (!r.usage) add(`GRANT USAGE ON SCHEMA ${quoteIdent(r.schema)} TO ${user};`, 'reading its tables and sequences');
      if (!r.select) add(`GRANT SELECT ON TABLE ${qualify(r.schema, r.name)} TO ${user};`, 'initial copy');
    }
  }
  if (sequences.length > 0) {
    const rows = await sql.unsafe<{ schema: string; name: string; usage: boolean; select: boolean }[]>(`
      SELECT n.nspname AS schema, c.relname AS name, has_schema_privilege(n.oid, 'USAGE') AS usage, has_sequence_privilege(c.oid, 'SELECT') AS "select"
      ${NAMED_RELATIONS} WHERE c.relkind = 'S' ORDER BY 1, 2`, [sequences.map((s) => s.schema), sequences.map((s) => s.name)]);
    for (const r of rows) {
      if (!r.usage) add(`GRANT USAGE ON SCHEMA ${quoteIdent(r.schema)} TO ${user};`, 'reading its tables and sequences');
      if (!r.select) add(`GRANT SELECT ON SEQUENCE ${qualify(r.schema, r.name)} TO ${user};`, 'sequence sync reads its exact position');
    }
  }
  return { missing, tables, sequences };
}

async function targetSide(sql: postgres.Sql, config: PgtideConfig, tables: readonly QualifiedName[], sequences: readonly QualifiedName[]): Promise<MissingPrivilege[]> {
  const [role] = await sql.unsafe<RoleRow[]>(ROLE_QUERY);
  if (!role) throw new PgtideError('INTERNAL', 'the target returned no row for the current user');
  if (role.superuser) return [];
  const user = quoteIdent(role.user);
  const missing: MissingPrivilege[] = [];
  const add = (fix: string, purpose: string): void => { if (!missing.some((m) => m.fix === fix)) missing.push({ side: 'target', fix, purpose }); };

  // The apply sessions run with session_replication_role = replica, a superuser-only setting
  // that PostgreSQL 15 made grantable (GRANT SET ON PARAMETER).
  if (role.version >= 150000) {
    const [row] = await sql.unsafe<{ ok: boolean }[]>(`SELECT has_parameter_privilege('session_replication_role', 'SET') AS ok`);
    if (!row?.ok) add(`GRANT SET ON PARAMETER session_replication_role TO ${user};`, 'apply without firing triggers or FK checks, as the built-in apply worker');
  } else {
    add(`ALTER ROLE ${user} SUPERUSER;`, 'PostgreSQL 14 lets only a superuser set session_replication_role (15+ can GRANT SET ON PARAMETER instead)');
  }

  const functions = await sql.unsafe<{ f: string; ok: boolean }[]>(`
    SELECT p.oid::regprocedure::text AS f, has_function_privilege(p.oid, 'EXECUTE') AS ok
      FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY($1::text[]) ORDER BY 1`, [ORIGIN_FUNCTIONS]);
  for (const f of functions) if (!f.ok) add(`GRANT EXECUTE ON FUNCTION ${f.f} TO ${user};`, 'replication origin: the applied position, kept in step with the data');

  const [state] = await sql.unsafe<{ usage: boolean; create: boolean }[]>(
    `SELECT has_schema_privilege(oid, 'USAGE') AS usage, has_schema_privilege(oid, 'CREATE') AS "create" FROM pg_namespace WHERE nspname = 'pgtide'`);
  // Only to create the schema: a `pgtide` schema made beforehand is enough (state-schema.ts
  // looks it up before creating it).
  if (!state && !role.create_db) add(`GRANT CREATE ON DATABASE ${quoteIdent(role.db)} TO ${user};`, "pgtide's state schema");
  if (state && (!state.usage || !state.create)) {
    add(`GRANT USAGE, CREATE ON SCHEMA pgtide TO ${user};`, "pgtide's state schema");
  }

  const names = [tables.map((t) => t.schema), tables.map((t) => t.name)];
  const rows = await sql.unsafe<{ oid: string; schema: string; name: string; usage: boolean; create: boolean; owner: boolean; granted: boolean[] }[]>(`
    SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name,
           has_schema_privilege(n.oid, 'USAGE') AS usage, has_schema_privilege(n.oid, 'CREATE') AS "create",
           pg_has_role(c.relowner, 'USAGE') AS owner,
           ARRAY[${TABLE_PRIVILEGES.map((p) => `has_table_privilege(c.oid, '${p}')`).join(', ')}] AS granted
    ${NAMED_RELATIONS} ORDER BY 2, 3`, names);
  for (const r of rows) {
    if (!r.usage) add(`GRANT USAGE ON SCHEMA ${quoteIdent(r.schema)} TO ${user};`, 'applying to its tables and sequences');
    const lacking = TABLE_PRIVILEGES.filter((_, i) => !r.granted[i]);
    if (lacking.length > 0) add(`GRANT ${lacking.join(', ')} ON TABLE ${qualify(r.schema, r.name)} TO ${user};`, 'initial copy and apply');
  }

  if (config.copy.enabled && config.copy.rebuildIndexes) {
    const rebuilt = await tablesWithRebuiltIndexes(sql, config.name, rows.filter((r) => !r.owner || !r.create).map((r) => r.oid));
    for (const r of rows) {
      if (!rebuilt.has(r.oid)) continue;
      if (!r.owner) add(`ALTER TABLE ${qualify(r.schema, r.name)} OWNER TO ${user};`, 'copy.rebuildIndexes drops and rebuilds its indexes for the copy (or set copy.rebuildIndexes: false)');
      if (!r.create) add(`GRANT CREATE ON SCHEMA ${quoteIdent(r.schema)} TO ${user};`, 'copy.rebuildIndexes creates its indexes again (or set copy.rebuildIndexes: false)');
    }
  }

  if (sequences.length > 0) {
    const seqs = await sql.unsafe<{ schema: string; name: string; usage: boolean; select: boolean; update: boolean }[]>(`
      SELECT n.nspname AS schema, c.relname AS name, has_schema_privilege(n.oid, 'USAGE') AS usage,
             has_sequence_privilege(c.oid, 'SELECT') AS "select", has_sequence_privilege(c.oid, 'UPDATE') AS update
      ${NAMED_RELATIONS} WHERE c.relkind = 'S' ORDER BY 1, 2`, [sequences.map((s) => s.schema), sequences.map((s) => s.name)]);
    for (const s of seqs) {
      if (!s.usage) add(`GRANT USAGE ON SCHEMA ${quoteIdent(s.schema)} TO ${user};`, 'applying to its tables and sequences');
      const lacking = [...(s.select ? [] : ['SELECT']), ...(s.update ? [] : ['UPDATE'])];
      if (lacking.length > 0) add(`GRANT ${lacking.join(', ')} ON SEQUENCE ${qualify(s.schema, s.name)} TO ${user};`, 'sequence sync reads it and calls setval()');
    }
  }
  return missing;
}

/**
 * Of the given tables, those the initial copy will still copy (not ready in
 * pgtide.table_state for this subscription) and that have an index
 * copy.rebuildIndexes would drop: a plain, valid, non-unique index that no
 * constraint or partitioned index owns (the same rule as table-copy.ts,
 * slightly wider so that the check never misses one).
 */
async function tablesWithRebuiltIndexes(sql: postgres.Sql, subscription: string, oids: readonly string[]): Promise<Set<string>> {
  if (oids.length === 0) return new Set();
  const [state] = await sql.unsafe<{ readable: boolean }[]>(
    `SELECT to_regclass('pgtide.table_state') IS NOT NULL AND has_table_privilege('pgtide.table_state', 'SELECT') AS readable`);
  const ready = state?.readable
    ? `AND NOT EXISTS (SELECT 1 FROM pgtide.table_state s WHERE s.subscription = $2 AND s.state = 'ready'
                        AND s.schema_name = tn.nspname AND s.table_name = t.relname)`
    : 'AND $2::text IS NOT NULL';
  const rows = await sql.unsafe<{ oid: string }[]>(`
    SELECT DISTINCT t.oid::text AS oid
      FROM pg_class t JOIN pg_namespace tn ON tn.oid = t.relnamespace
      JOIN pg_index i ON i.indrelid = t.oid
      JOIN pg_class ic ON ic.oid = i.indexrelid AND ic.relkind = 'i'
     WHERE t.oid::text = ANY($1::text[])
       AND NOT i.indisprimary AND NOT i.indisunique AND NOT i.indisexclusion AND NOT i.indisreplident AND i.indisvalid
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
       AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
       ${ready}`, [[...oids], subscription]);
  return new Set(rows.map((r) => r.oid));
}
