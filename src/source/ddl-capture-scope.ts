/**
 * The parts of the DDL capture (ddl-capture.ts) for partitions and for the
 * objects around replicated tables that are not tables: sequences their
 * defaults use (ALTER SEQUENCE), materialized views, grants.
 *
 * Partitions: a partition of a table a publication lists is published too
 * (pgoutput looks at the ancestors), so it is in scope. PostgreSQL reports
 * ATTACH and DETACH PARTITION, and a change to a partitioned table that
 * recurses to its partitions, on the partitioned table only: the capture
 * then looks at its partitions, and at the tables its stored snapshots still
 * call its partitions, and emits those whose snapshot changed.
 *
 * Grants: pg_event_trigger_ddl_commands() reports GRANT and REVOKE with
 * object_type 'TABLE' and no object identity (14–18), so the capture keeps the
 * ACLs of the tables in scope (pgtide.ddl_source_acl) and compares them after
 * each GRANT/REVOKE: when one changed, the statement is replayed as text
 * (sinks/postgres/ddl-objects.ts, the single-statement rule).
 */

/** Facts about a table the target needs beside its snapshot: under which name its rows are published, and whether a table that just became a partition holds rows. */
export const SCOPE_FUNCTIONS_SQL = `
CREATE TABLE IF NOT EXISTS pgtide.ddl_source_acl (table_oid oid PRIMARY KEY, acl text NOT NULL);
REVOKE ALL ON pgtide.ddl_source_acl FROM PUBLIC;

-- The name under which pgoutput publishes rel's rows for pgtide's publications: rel itself, or the
-- ancestor listed in pg_publication_tables (publish_via_partition_root); null when none is.
CREATE OR REPLACE FUNCTION pgtide.ddl_published_as(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT jsonb_build_object('schema', pt.schemaname, 'name', pt.tablename)
    -- pg_partition_ancestors lists rel first, and nothing for a table outside any partition tree.
    FROM (SELECT rel AS relid, 0::bigint AS depth UNION ALL SELECT * FROM pg_partition_ancestors(rel) WITH ORDINALITY) AS a(relid, depth)
    JOIN pg_class c ON c.oid = a.relid JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_publication_tables pt ON pt.schemaname = n.nspname AND pt.tablename = c.relname
    JOIN pgtide.ddl_scope sc ON sc.publication = pt.pubname
   ORDER BY a.depth LIMIT 1
$fn$;

-- Added to each table of a ddl_command_end message. Its ACL is recorded as the one the next GRANT
-- compares with (a new table may have one from ALTER DEFAULT PRIVILEGES). A table that left scope
-- (a partition detached from a published root) is forgotten here, after its last message.
CREATE OR REPLACE FUNCTION pgtide.ddl_table_facts(rel oid, before_snap jsonb, after_snap jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  published jsonb := pgtide.ddl_published_as(rel);
  filled boolean := false;
BEGIN
  IF after_snap ? 'partition' AND (before_snap IS NULL OR before_snap->'partition'->'parent_oid' IS DISTINCT FROM after_snap->'partition'->'parent_oid') THEN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', rel::regclass) INTO filled;
  END IF;
  IF published IS NULL AND before_snap ? 'partition' AND NOT after_snap ? 'partition'
     AND NOT EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid JOIN pgtide.ddl_scope sc ON sc.publication = p.pubname WHERE pr.prrelid = rel) THEN
    DELETE FROM pgtide.ddl_source_snapshot WHERE table_oid = rel;
    DELETE FROM pgtide.ddl_source_acl WHERE table_oid = rel;
  ELSE
    INSERT INTO pgtide.ddl_source_acl VALUES (rel, coalesce(pgtide.ddl_acl_text(rel), '')) ON CONFLICT (table_oid) DO UPDATE SET acl = EXCLUDED.acl;
  END IF;
  RETURN jsonb_build_object('published_as', published, 'filled', filled);
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_table_facts(oid, jsonb, jsonb) FROM PUBLIC;

-- A partitioned table's command may have changed its partitions (a recursing ALTER TABLE, ATTACH,
-- DETACH): they are looked at too; those whose snapshot did not change emit nothing.
CREATE OR REPLACE FUNCTION pgtide.ddl_partition_family(rels oid[]) RETURNS oid[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT rels || coalesce(array_agg(DISTINCT x) FILTER (WHERE NOT x = ANY (rels)), '{}')
    FROM (SELECT t.relid AS x FROM unnest(rels) r JOIN pg_class c ON c.oid = r AND c.relkind = 'p'
            CROSS JOIN LATERAL pg_partition_tree(r) t WHERE t.relid <> r
          UNION
          -- Detached: the stored snapshot still names the partitioned table as its parent.
          SELECT s.table_oid FROM pgtide.ddl_source_snapshot s
           WHERE s.snapshot ? 'partition'
             AND (s.snapshot->'partition'->>'parent_oid')::oid IN (SELECT c.oid FROM pg_class c WHERE c.oid = ANY (rels) AND c.relkind = 'p')) f
$fn$;

-- ALTER SEQUENCE of a sequence a table in scope uses (a default's nextval, or owned by its column).
CREATE OR REPLACE FUNCTION pgtide.ddl_sequence_in_scope(seq oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT EXISTS (SELECT 1 FROM pgtide.ddl_source_snapshot s JOIN pg_class c ON c.oid = seq JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE s.snapshot->'sequences' @> jsonb_build_array(jsonb_build_object('schema', n.nspname, 'name', c.relname)))
      OR EXISTS (SELECT 1 FROM pg_depend d JOIN pgtide.ddl_source_snapshot s ON s.table_oid = d.refobjid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = seq AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
$fn$;

-- An index on a materialized view (replayed as text with the view: REFRESH … CONCURRENTLY needs a unique one).
CREATE OR REPLACE FUNCTION pgtide.ddl_matview_index(idx oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE i.indexrelid = idx AND c.relkind = 'm')
$fn$;

-- The ACL of a table, its columns' included, as text to compare.
CREATE OR REPLACE FUNCTION pgtide.ddl_acl_text(rel oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT coalesce(c.relacl::text, '') || coalesce((SELECT string_agg(a.attnum::text || ':' || a.attacl::text, ',' ORDER BY a.attnum)
                                                     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL AND NOT a.attisdropped), '')
    FROM pg_class c WHERE c.oid = rel
$fn$;

-- After a GRANT or REVOKE: the tables in scope whose ACL it changed (their stored ACL refreshed).
CREATE OR REPLACE FUNCTION pgtide.ddl_acl_changes(tag text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  r record;
  changed jsonb := '[]';
BEGIN
  FOR r IN SELECT s.table_oid, pgtide.ddl_acl_text(s.table_oid) AS acl, s.snapshot->>'schema' AS sch, s.snapshot->>'name' AS name
             FROM pgtide.ddl_source_snapshot s LEFT JOIN pgtide.ddl_source_acl a ON a.table_oid = s.table_oid
            WHERE pgtide.ddl_acl_text(s.table_oid) IS DISTINCT FROM coalesce(a.acl, '') LOOP
    INSERT INTO pgtide.ddl_source_acl VALUES (r.table_oid, coalesce(r.acl, '')) ON CONFLICT (table_oid) DO UPDATE SET acl = EXCLUDED.acl;
    changed := changed || jsonb_build_object('tag', tag, 'type', 'table', 'identity', format('%I.%I', r.sch, r.name));
  END LOOP;
  RETURN changed;
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_acl_changes(text) FROM PUBLIC;
`;

/** Run at install after the snapshots: the ACLs the next GRANT is compared with. */
export const SCOPE_INSTALL_SQL = `
INSERT INTO pgtide.ddl_source_acl SELECT s.table_oid, coalesce(pgtide.ddl_acl_text(s.table_oid), '') FROM pgtide.ddl_source_snapshot s
ON CONFLICT (table_oid) DO UPDATE SET acl = EXCLUDED.acl;
`;

export const SCOPE_UNINSTALL_SQL = `
DROP FUNCTION IF EXISTS pgtide.ddl_table_facts(oid, jsonb, jsonb);
DROP FUNCTION IF EXISTS pgtide.ddl_published_as(oid);
DROP FUNCTION IF EXISTS pgtide.ddl_partition_family(oid[]);
DROP FUNCTION IF EXISTS pgtide.ddl_sequence_in_scope(oid);
DROP FUNCTION IF EXISTS pgtide.ddl_acl_changes(text);
DROP FUNCTION IF EXISTS pgtide.ddl_acl_text(oid);
DROP FUNCTION IF EXISTS pgtide.ddl_matview_index(oid);
DROP TABLE IF EXISTS pgtide.ddl_source_acl;
`;
