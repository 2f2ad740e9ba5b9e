/**
 * The part of the DDL capture (ddl-capture.ts) for schemas: ALTER SCHEMA …
 * RENAME TO and DROP SCHEMA of a schema in scope (one that holds a table in
 * scope, or is named in newTableSchemas).
 *
 * pg_event_trigger_ddl_commands() reports ALTER SCHEMA (RENAME TO and OWNER
 * TO alike) with object_type 'schema', the namespace's OID and its name after
 * the command, and nothing for the tables inside (14–18). So the capture keeps
 * the name of each schema in scope by OID (pgtide.ddl_source_schema): a
 * RENAME is told from an OWNER TO by that name changing, and the old name is
 * known whatever the schema holds. The tables' stored snapshots are taken
 * again at the rename (their schema, and any expression naming it, changed),
 * so the next change to them diffs against the renamed table, not a table to
 * move back. Ownership is not replicated: roles are per cluster.
 *
 * CREATE SCHEMA is not sent: the target creates a schema when a table in
 * scope is created in it (sinks/postgres/ddl-schemas.ts), so a schema that
 * nothing in scope uses never reaches it. A schema named in newTableSchemas
 * is recorded at its CREATE, so that its rename and drop are followed.
 */

export const SCHEMA_FUNCTIONS_SQL = `
-- former: the names it had before its renames (a newTableSchemas list naming one of them follows it).
CREATE TABLE IF NOT EXISTS pgtide.ddl_source_schema (nsp oid PRIMARY KEY, name text NOT NULL, former text[] NOT NULL DEFAULT '{}');
REVOKE ALL ON pgtide.ddl_source_schema FROM PUBLIC;

-- Records the schema of each table in scope, and the existing schemas named in newTableSchemas
-- (their name before any later rename). A schema already recorded keeps its recorded name.
CREATE OR REPLACE FUNCTION pgtide.ddl_note_schemas() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
  INSERT INTO pgtide.ddl_source_schema
  SELECT DISTINCT n.oid, n.nspname, '{}'::text[] FROM pg_namespace n
   WHERE n.oid IN (SELECT c.relnamespace FROM pgtide.ddl_source_snapshot s JOIN pg_class c ON c.oid = s.table_oid)
      OR n.nspname IN (SELECT unnest(schemas) FROM pgtide.ddl_scope)
  ON CONFLICT (nsp) DO NOTHING
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_note_schemas() FROM PUBLIC;

-- ALTER SCHEMA of a schema in scope: when its name changed (RENAME TO, not OWNER TO), one message
-- with the old and new names and the new snapshots of the tables in scope whose snapshot changed
-- (those in the schema; others whose expressions name it). newTableSchemas (pgtide.ddl_scope)
-- follows the rename, so new tables in the renamed schema keep joining.
CREATE OR REPLACE FUNCTION pgtide.ddl_schema_altered(schema_oid oid, tag text, path text, query text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  old_name text;
  new_name text;
  r record;
  after_snap jsonb;
  tabs jsonb := '[]';
BEGIN
  -- A schema not recorded (a capture installed by an older pgtide): its tables' snapshots still name it.
  SELECT coalesce((SELECT name FROM pgtide.ddl_source_schema WHERE ddl_source_schema.nsp = schema_oid),
                  (SELECT s.snapshot->>'schema' FROM pgtide.ddl_source_snapshot s JOIN pg_class c ON c.oid = s.table_oid WHERE c.relnamespace = schema_oid LIMIT 1))
    INTO old_name;
  SELECT nspname INTO new_name FROM pg_namespace WHERE oid = schema_oid;
  IF old_name IS NULL OR new_name IS NULL OR old_name = new_name THEN RETURN; END IF;
  INSERT INTO pgtide.ddl_source_schema AS s VALUES (schema_oid, new_name, ARRAY[old_name]) ON CONFLICT (nsp) DO UPDATE SET name = EXCLUDED.name, former = s.former || old_name;
  UPDATE pgtide.ddl_scope SET schemas = array_replace(schemas, old_name, new_name) WHERE old_name = ANY (schemas);
  FOR r IN SELECT s.table_oid, s.snapshot FROM pgtide.ddl_source_snapshot s ORDER BY s.table_oid LOOP
    after_snap := pgtide.ddl_table_snapshot(r.table_oid);
    IF after_snap IS NULL OR after_snap = r.snapshot THEN CONTINUE; END IF;
    UPDATE pgtide.ddl_source_snapshot SET snapshot = after_snap WHERE table_oid = r.table_oid;
    tabs := tabs || jsonb_build_object('oid', r.table_oid::bigint, 'after', after_snap);
  END LOOP;
  PERFORM pgtide.ddl_emit(jsonb_build_object('v', 1, 'event', 'schema', 'action', 'rename', 'tag', tag, 'statement', query,
    'search_path', path, 'oid', schema_oid::bigint, 'old', old_name, 'name', new_name, 'tables', tabs));
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_schema_altered(oid, text, text, text) FROM PUBLIC;

-- sql_drop: the schemas in scope that a DROP SCHEMA removed (the target drops them once its
-- copies of the tables are gone and nothing else is left in them).
CREATE OR REPLACE FUNCTION pgtide.ddl_schemas_dropped() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  r record;
  found_name text;
  gone jsonb := '[]';
BEGIN
  PERFORM pgtide.ddl_note_schemas();
  FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() WHERE object_type = 'schema' LOOP
    DELETE FROM pgtide.ddl_source_schema WHERE nsp = r.objid RETURNING name INTO found_name;
    IF NOT FOUND THEN CONTINUE; END IF;
    gone := gone || jsonb_build_object('oid', r.objid::bigint, 'name', found_name);
  END LOOP;
  RETURN gone;
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_schemas_dropped() FROM PUBLIC;
`;

/**
 * Run at install after pgtide.ddl_scope was written from the configuration: a
 * newTableSchemas name that no schema has any more, but that a recorded schema
 * had before a rename, stands for that schema under its current name.
 */
export const SCHEMA_INSTALL_SQL = `
UPDATE pgtide.ddl_scope sc SET schemas = coalesce((
  SELECT array_agg(coalesce(CASE WHEN to_regnamespace(quote_ident(u.x)) IS NULL
                                 THEN (SELECT s.name FROM pgtide.ddl_source_schema s WHERE u.x = ANY (s.former) ORDER BY s.nsp LIMIT 1) END, u.x) ORDER BY u.o)
    FROM unnest(sc.schemas) WITH ORDINALITY AS u(x, o)), '{}');
SELECT pgtide.ddl_note_schemas();`;

export const SCHEMA_UNINSTALL_SQL = `
DROP FUNCTION IF EXISTS pgtide.ddl_schema_altered(oid, text, text, text);
DROP FUNCTION IF EXISTS pgtide.ddl_schemas_dropped();
DROP FUNCTION IF EXISTS pgtide.ddl_note_schemas();
DROP TABLE IF EXISTS pgtide.ddl_source_schema;
`;
