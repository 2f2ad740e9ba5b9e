/**
 * DDL capture on the source: event triggers that turn each schema change to a
 * replicated table into a signed, transactional logical message
 * (`pg_logical_emit_message(true, 'pgtide.ddl', …)`). pgoutput delivers the
 * message inside its transaction, before the changes written after the DDL,
 * so the target applies the change exactly where the source made it.
 *
 * Why messages carry snapshots and not statements: a statement depends on the
 * session (search_path, a DO block, a multi-statement query string, a
 * function); a catalog snapshot by OID and attnum does not, and diffing two
 * snapshots by attnum tells a rename from a drop plus an add. Each message
 * holds the table's snapshot before (kept in pgtide.ddl_source_snapshot) and
 * after the command; the statement text is informational.
 *
 * A third trigger, table_rewrite, notes tables rewritten for a new column's
 * default (volatile, identity): their messages carry `recopy`, and the target
 * copies such a table again rather than keep values it computed itself.
 *
 * Why signed: any role may call pg_logical_emit_message, so without a
 * signature anyone who can connect could make pgtide run DDL with the
 * target's privileges. The HMAC-SHA256 is computed in PL/pgSQL with the
 * built-in sha256() (no pgcrypto) under a key in pgtide.ddl_key, readable by
 * the owner only; the trigger runs SECURITY DEFINER to read it, and the inner
 * functions are not executable by PUBLIC. Event triggers do not fire under
 * session_replication_role = replica (they are ENABLE ORIGIN), so DDL that
 * pgtide applies on a target is never captured again there.
 * https://www.postgresql.org/docs/current/event-triggers.html
 */
import { randomBytes } from 'node:crypto';
import type postgres from 'postgres';
import { fromServerError, PgtideError } from '../core/errors.js';
import { textArrayLiteral } from '../core/sql.js';
import { MISSING_VALUE_FUNCTION, MISSING_VALUE_SNAPSHOT_FIELD, MISSING_VALUE_SNAPSHOT_JOIN, MISSING_VALUE_UNINSTALL } from './ddl-missing-value.js';
import { SCOPE_FUNCTIONS_SQL, SCOPE_INSTALL_SQL, SCOPE_UNINSTALL_SQL } from './ddl-capture-scope.js';
import { SCHEMA_FUNCTIONS_SQL, SCHEMA_INSTALL_SQL, SCHEMA_UNINSTALL_SQL } from './ddl-capture-schemas.js';

export const DDL_MESSAGE_PREFIX = 'pgtide.ddl';

const SNAPSHOT_FUNCTION = `
CREATE OR REPLACE FUNCTION pgtide.ddl_table_snapshot(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  -- Under search_path pg_catalog, format_type, pg_get_expr and pg_get_indexdef qualify every
  -- user object, so the texts replay on the target whatever its search_path.
  SELECT jsonb_build_object(
    'oid', c.oid::bigint, 'schema', n.nspname, 'name', c.relname, 'relkind', c.relkind::text,
    'replident', c.relreplident::text,
    'columns', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
               'attnum', a.attnum, 'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
               'typmod', a.atttypmod, 'notnull', a.attnotnull,
               'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
               'identity', a.attidentity::text,
               'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END)${MISSING_VALUE_SNAPSHOT_FIELD}
             ORDER BY a.attnum)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::jsonb),
    'indexes', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
               'oid', i.indexrelid::bigint, 'name', ic.relname, 'def', pg_get_indexdef(i.indexrelid),
               'primary', i.indisprimary, 'replident', i.indisreplident,
               'constraint', (SELECT con.conname FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.conrelid = c.oid LIMIT 1))
             ORDER BY ic.relname)
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
       WHERE i.indrelid = c.oid), '[]'::jsonb),
    -- NOT NULL constraints (contype 'n', PostgreSQL 18) are carried by the columns' notnull.
    'constraints', coalesce((
      SELECT jsonb_agg(jsonb_build_object('name', con.conname, 'type', con.contype::text, 'def', pg_get_constraintdef(con.oid))
             ORDER BY con.conname)
        FROM pg_constraint con
       WHERE con.conrelid = c.oid AND con.contype IN ('c', 'f', 'p', 'u', 'x')), '[]'::jsonb),
    -- Sequences the columns' defaults use (serial, bigserial, nextval of a CREATE SEQUENCE), so that
    -- the target can create them before a default names them. Identity sequences are not here (no
    -- pg_attrdef): the identity column creates its own. owned_by: the column a serial's sequence belongs to.
    'sequences', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
               'schema', sn.nspname, 'name', sc.relname, 'type', format_type(sq.seqtypid, NULL),
               'start', sq.seqstart::text, 'increment', sq.seqincrement::text, 'min', sq.seqmin::text, 'max', sq.seqmax::text,
               'cache', sq.seqcache::text, 'cycle', sq.seqcycle,
               'owned_by', (SELECT a.attname FROM pg_depend od JOIN pg_attribute a ON a.attrelid = od.refobjid AND a.attnum = od.refobjsubid
                             WHERE od.classid = 'pg_class'::regclass AND od.objid = sq.seqrelid AND od.refclassid = 'pg_class'::regclass
                               AND od.refobjid = c.oid AND od.deptype = 'a' LIMIT 1))
             ORDER BY sn.nspname, sc.relname)
        FROM pg_sequence sq JOIN pg_class sc ON sc.oid = sq.seqrelid JOIN pg_namespace sn ON sn.oid = sc.relnamespace
       WHERE sq.seqrelid IN (SELECT d.refobjid FROM pg_attrdef ad JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                              WHERE ad.adrelid = c.oid AND d.refclassid = 'pg_class'::regclass)), '[]'::jsonb))
    -- Partitions (ddl-capture-scope.ts): the parent and bound of a partition, the key of a
    -- partitioned table; comments on the table (key 0) and its columns (by attnum). Absent when
    -- empty, so the snapshots of other tables stay as they were.
    || CASE WHEN c.relispartition THEN jsonb_build_object('partition', (
         SELECT jsonb_build_object('parent_oid', i.inhparent::bigint, 'parent_schema', pn.nspname, 'parent', pc.relname, 'bound', pg_get_expr(c.relpartbound, c.oid))
           FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid)) ELSE '{}'::jsonb END
    || CASE WHEN c.relkind = 'p' THEN jsonb_build_object('partkey', pg_get_partkeydef(c.oid)) ELSE '{}'::jsonb END
    || coalesce((SELECT jsonb_build_object('comments', jsonb_object_agg(d.objsubid::text, d.description))
                   FROM pg_description d WHERE d.classoid = 'pg_class'::regclass AND d.objoid = c.oid HAVING count(*) > 0), '{}'::jsonb)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace${MISSING_VALUE_SNAPSHOT_JOIN}
  WHERE c.oid = rel
$fn$;`;

const INSTALL_SQL = `
CREATE SCHEMA IF NOT EXISTS pgtide;
CREATE TABLE IF NOT EXISTS pgtide.ddl_key (id int PRIMARY KEY CHECK (id = 1), key bytea NOT NULL);
REVOKE ALL ON pgtide.ddl_key FROM PUBLIC;
-- Which publications' tables are in scope, and where new tables join automatically.
CREATE TABLE IF NOT EXISTS pgtide.ddl_scope (publication text PRIMARY KEY, add_new_tables boolean NOT NULL, schemas text[] NOT NULL);
REVOKE ALL ON pgtide.ddl_scope FROM PUBLIC;
-- The last snapshot of each table in scope: the "before" of the next change.
CREATE TABLE IF NOT EXISTS pgtide.ddl_source_snapshot (table_oid oid PRIMARY KEY, snapshot jsonb NOT NULL);
REVOKE ALL ON pgtide.ddl_source_snapshot FROM PUBLIC;

CREATE OR REPLACE FUNCTION pgtide.hmac_sha256(key bytea, msg bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
-- RFC 2104 with SHA-256 (block size 64 bytes).
DECLARE
  k bytea := key;
  ipad bytea;
  opad bytea;
BEGIN
  IF length(k) > 64 THEN k := sha256(k); END IF;
  k := k || decode(repeat('00', 64 - length(k)), 'hex');
  ipad := k;
  opad := k;
  FOR i IN 0..63 LOOP
    ipad := set_byte(ipad, i, get_byte(k, i) # 54);
    opad := set_byte(opad, i, get_byte(k, i) # 92);
  END LOOP;
  RETURN sha256(opad || sha256(ipad || msg));
END
$fn$;
${MISSING_VALUE_FUNCTION}
${SNAPSHOT_FUNCTION}
${SCOPE_FUNCTIONS_SQL}

CREATE OR REPLACE FUNCTION pgtide.ddl_in_scope(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT EXISTS (SELECT 1 FROM pgtide.ddl_source_snapshot WHERE table_oid = rel)
      OR EXISTS (SELECT 1 FROM pg_publication p JOIN pgtide.ddl_scope s ON s.publication = p.pubname
                  -- A partition of a listed table is published too (pgoutput looks at the ancestors;
                  -- pg_partition_ancestors is empty for a table outside any partition tree).
                  WHERE EXISTS (SELECT 1 FROM pg_publication_rel pr WHERE pr.prpubid = p.oid AND (pr.prrelid = rel OR pr.prrelid IN (SELECT relid FROM pg_partition_ancestors(rel))))
                     OR (p.puballtables AND EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                                     WHERE c.oid = rel AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
                                                       AND n.nspname <> 'pgtide' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_')))
$fn$;

CREATE OR REPLACE FUNCTION pgtide.ddl_emit(body jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  k bytea;
  b bytea := convert_to(body::text, 'UTF8');
BEGIN
  SELECT key INTO k FROM pgtide.ddl_key WHERE id = 1;
  IF k IS NULL THEN
    RAISE EXCEPTION 'pgtide: the DDL signing key is missing (pgtide.ddl_key); run pgtide ddl install again';
  END IF;
  -- Content: 64 hex digits of HMAC-SHA256 over the body, a space, the body (UTF-8 JSON).
  PERFORM pg_logical_emit_message(true, 'pgtide.ddl', convert_to(encode(pgtide.hmac_sha256(k, b), 'hex') || ' ', 'UTF8') || b);
END
$fn$;

-- One message for the tables in rels whose snapshot changed (before: the stored one).
CREATE OR REPLACE FUNCTION pgtide.ddl_emit_tables(tag text, path text, query text, rels oid[], created oid[], objs jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  rel oid;
  tabs jsonb := '[]';
  before_snap jsonb;
  after_snap jsonb;
  recopy boolean;
BEGIN
  FOREACH rel IN ARRAY rels LOOP
    SELECT snapshot INTO before_snap FROM pgtide.ddl_source_snapshot WHERE table_oid = rel;
    after_snap := pgtide.ddl_table_snapshot(rel);
    -- A no-op (or a change outside what the snapshot holds, such as a comment) emits nothing;
    -- so does the second report of one change (DROP COLUMN: sql_drop, then ddl_command_end).
    IF after_snap IS NULL OR before_snap IS NOT DISTINCT FROM after_snap THEN CONTINUE; END IF;
    INSERT INTO pgtide.ddl_source_snapshot AS t VALUES (rel, after_snap)
      ON CONFLICT (table_oid) DO UPDATE SET snapshot = EXCLUDED.snapshot;
    -- Rewritten with rows because of a default the fast path could not store (ddl_note_rewrite), and
    -- the command added a column with a default or identity: the existing rows got values (volatile:
    -- clock_timestamp(), nextval, random()) that the target cannot compute the same, so the target
    -- re-copies the table (ddl.rewriteVolatile). A generated column or a domain's NULL default is
    -- reproducible and does not count.
    recopy := before_snap IS NOT NULL
      AND position(',' || rel::text || ',' IN coalesce(current_setting('pgtide.ddl_rewritten', true), '')) > 0
      AND EXISTS (SELECT 1 FROM jsonb_array_elements(after_snap->'columns') c
                   WHERE NOT (before_snap->'columns') @> jsonb_build_array(jsonb_build_object('attnum', c->'attnum'))
                     AND c->>'generated' IS NULL AND (c->>'identity' <> '' OR c->>'default' IS NOT NULL));
    tabs := tabs || (jsonb_build_object('oid', rel::bigint, 'created', rel = ANY (created), 'before', before_snap, 'after', after_snap, 'recopy', recopy)
                     || pgtide.ddl_table_facts(rel, before_snap, after_snap));
  END LOOP;
  IF jsonb_array_length(tabs) = 0 THEN RETURN; END IF;
  PERFORM pgtide.ddl_emit(jsonb_build_object('v', 1, 'event', 'ddl_command_end', 'tag', tag, 'statement', query,
    'search_path', path, 'objects', objs, 'tables', tabs));
END
$fn$;

REVOKE ALL ON FUNCTION pgtide.ddl_emit(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtide.ddl_emit_tables(text, text, text, oid[], oid[], jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtide.ddl_table_snapshot(oid) FROM PUBLIC;
${SCHEMA_FUNCTIONS_SQL}

-- Views, functions, procedures and triggers are replayed on the target as statement text
-- (src/sinks/postgres/ddl-objects.ts): in scope when they live in a schema of a table in scope
-- (a trigger: when its table is in scope).
CREATE OR REPLACE FUNCTION pgtide.ddl_object_schema_in_scope(schema_name text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT EXISTS (SELECT 1 FROM pgtide.ddl_source_snapshot WHERE snapshot->>'schema' = schema_name)
      OR EXISTS (SELECT 1 FROM pgtide.ddl_scope WHERE schema_name = ANY (schemas))
$fn$;

CREATE OR REPLACE FUNCTION pgtide.ddl_emit_object(tag text, path text, query text, objs jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM pgtide.ddl_emit(jsonb_build_object('v', 1, 'event', 'object', 'tag', tag, 'statement', query, 'search_path', path, 'objects', objs));
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_emit_object(text, text, text, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION pgtide.ddl_capture(tag text, path text, query text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  r record;
  s record;
  rel oid;
  rels oid[] := '{}';
  created oid[] := '{}';
  objs jsonb := '[]';
  other jsonb := '[]';
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    -- GRANT/REVOKE name no object: replayed when they changed the ACL of a table in scope.
    IF r.command_tag IN ('GRANT', 'REVOKE') THEN
      other := other || pgtide.ddl_acl_changes(r.command_tag);
      CONTINUE;
    END IF;
    -- ALTER SCHEMA (a rename is sent; ddl-capture-schemas.ts); CREATE SCHEMA of a newTableSchemas name is recorded.
    IF r.object_type = 'schema' THEN
      IF r.command_tag = 'ALTER SCHEMA' THEN PERFORM pgtide.ddl_schema_altered(r.objid, tag, path, query);
      ELSE PERFORM pgtide.ddl_note_schemas();
      END IF;
      CONTINUE;
    END IF;
    -- Only a statement that is ALTER SEQUENCE: ALTER TABLE … ADD COLUMN serial/identity reports
    -- its sequence's OWNED BY as an ALTER SEQUENCE too, and the table's snapshot carries that.
    IF r.object_type = 'sequence' THEN
      IF tag = 'ALTER SEQUENCE' AND r.command_tag = 'ALTER SEQUENCE' AND pgtide.ddl_sequence_in_scope(r.objid) THEN
        other := other || jsonb_build_object('tag', r.command_tag, 'type', r.object_type, 'identity', r.object_identity);
      END IF;
      CONTINUE;
    END IF;
    IF r.object_type IN ('view', 'function', 'procedure', 'trigger', 'materialized view')
       OR (r.object_type = 'index' AND pgtide.ddl_matview_index(r.objid)) THEN
      IF (r.object_type = 'trigger' AND pgtide.ddl_in_scope((SELECT tgrelid FROM pg_trigger WHERE oid = r.objid)))
         OR (r.object_type <> 'trigger' AND pgtide.ddl_object_schema_in_scope(r.schema_name)) THEN
        other := other || jsonb_build_object('tag', r.command_tag, 'type', r.object_type, 'identity', r.object_identity);
      END IF;
      CONTINUE;
    END IF;
    -- An enum value added to a type that a table in scope uses: the type's labels, in order.
    IF r.classid = 'pg_type'::regclass AND r.command_tag = 'ALTER TYPE'
       AND EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = r.objid AND t.typtype = 'e')
       AND EXISTS (SELECT 1 FROM pg_attribute a JOIN pgtide.ddl_source_snapshot ss ON ss.table_oid = a.attrelid WHERE a.atttypid = r.objid AND NOT a.attisdropped) THEN
      PERFORM pgtide.ddl_emit(jsonb_build_object('v', 1, 'event', 'enum', 'tag', tag, 'statement', query, 'search_path', path,
        'type', (SELECT jsonb_build_object('schema', n.nspname, 'name', t.typname,
                          'labels', (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
                   FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = r.objid)));
      CONTINUE;
    END IF;
    rel := CASE
      WHEN r.classid = 'pg_class'::regclass AND r.object_type IN ('table', 'table column') THEN r.objid
      WHEN r.classid = 'pg_class'::regclass AND r.object_type = 'index' THEN (SELECT indrelid FROM pg_index WHERE indexrelid = r.objid)
    END;
    IF rel IS NULL THEN CONTINUE; END IF;
    -- A new table joins pgtide's publication (FOR TABLE list) in the creating transaction, so its
    -- rows are published from this point on. Only tables with a replica identity key: the source
    -- refuses UPDATE and DELETE on a published table without one.
    IF r.command_tag = 'CREATE TABLE' AND r.object_type = 'table' AND NOT pgtide.ddl_in_scope(rel) THEN
      FOR s IN SELECT sc.publication FROM pgtide.ddl_scope sc JOIN pg_publication p ON p.pubname = sc.publication
                WHERE sc.add_new_tables AND NOT p.puballtables AND r.schema_name = ANY (sc.schemas)
                  AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = rel AND i.indisprimary) LOOP
        EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s', s.publication, rel::regclass);
        created := created || rel;
      END LOOP;
    END IF;
    IF NOT pgtide.ddl_in_scope(rel) THEN CONTINUE; END IF;
    IF NOT rel = ANY (rels) THEN rels := rels || rel; END IF;
    objs := objs || jsonb_build_object('tag', r.command_tag, 'type', r.object_type, 'identity', r.object_identity);
  END LOOP;
  IF cardinality(rels) > 0 THEN
    PERFORM pgtide.ddl_emit_tables(tag, path, query, pgtide.ddl_partition_family(rels), created, objs);
    PERFORM pgtide.ddl_note_schemas();
  END IF;
  IF jsonb_array_length(other) > 0 THEN PERFORM pgtide.ddl_emit_object(tag, path, query, other); END IF;
  -- The rewrites noted during this command were for this command only.
  IF coalesce(current_setting('pgtide.ddl_rewritten', true), '') <> '' THEN PERFORM set_config('pgtide.ddl_rewritten', '', true); END IF;
END
$fn$;

-- table_rewrite: notes (transaction-local) a table in scope that holds rows and is rewritten because
-- ALTER TABLE could not store a new column's default once (AT_REWRITE_DEFAULT_VAL, reason bit 2:
-- a volatile default, an identity column, a stored generated column, a domain with constraints).
-- The ddl_command_end of the same command decides from the snapshots whether the target can
-- reproduce the values. https://www.postgresql.org/docs/current/event-trigger-table-rewrite-example.html
CREATE OR REPLACE FUNCTION pgtide.ddl_note_rewrite(rel oid, reason int) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  has_rows boolean;
BEGIN
  IF reason & 2 = 0 OR NOT EXISTS (SELECT 1 FROM pgtide.ddl_source_snapshot WHERE table_oid = rel) THEN RETURN; END IF;
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', rel::regclass) INTO has_rows;
  IF NOT has_rows THEN RETURN; END IF;
  PERFORM set_config('pgtide.ddl_rewritten', coalesce(nullif(current_setting('pgtide.ddl_rewritten', true), ''), ',') || rel::text || ',', true);
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_note_rewrite(oid, int) FROM PUBLIC;

CREATE OR REPLACE FUNCTION pgtide.ddl_capture_drop(tag text, path text, query text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  r record;
  rel oid;
  before_snap jsonb;
  dropped jsonb := '[]';
  schemas jsonb := '[]';
  gone oid[] := '{}';
  altered oid[] := '{}';
  objs jsonb := '[]';
  other jsonb := '[]';
BEGIN
  -- DROP VIEW / FUNCTION / PROCEDURE / TRIGGER of an object in scope (not one a DROP TABLE … CASCADE takes along).
  IF tag IN ('DROP VIEW', 'DROP FUNCTION', 'DROP PROCEDURE', 'DROP TRIGGER', 'DROP MATERIALIZED VIEW') THEN
    FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() WHERE original AND object_type IN ('view', 'function', 'procedure', 'trigger', 'materialized view') LOOP
      -- A trigger's address is (schema, table, trigger); its schema_name is not set on every major.
      IF (r.object_type = 'trigger' AND pgtide.ddl_in_scope(to_regclass(format('%I.%I', r.address_names[1], r.address_names[2]))))
         OR (r.object_type <> 'trigger' AND pgtide.ddl_object_schema_in_scope(r.schema_name)) THEN
        other := other || jsonb_build_object('tag', tag, 'type', r.object_type, 'identity', r.object_identity);
      END IF;
    END LOOP;
    IF jsonb_array_length(other) > 0 THEN PERFORM pgtide.ddl_emit_object(tag, path, query, other); END IF;
    RETURN;
  END IF;
  -- Tables that lost an index or a column (DROP INDEX, DROP … CASCADE) without being dropped
  -- themselves: no ddl_command_end reports them. An index's table is found in its last snapshot.
  FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
    IF r.object_type = 'table' THEN gone := gone || r.objid; CONTINUE; END IF;
    rel := CASE
      WHEN r.object_type = 'table column' THEN r.objid
      WHEN r.object_type = 'index' THEN (SELECT table_oid FROM pgtide.ddl_source_snapshot
                                          WHERE snapshot->'indexes' @> jsonb_build_array(jsonb_build_object('oid', r.objid::bigint)) LIMIT 1)
    END;
    IF rel IS NULL OR NOT EXISTS (SELECT 1 FROM pgtide.ddl_source_snapshot WHERE table_oid = rel) THEN CONTINUE; END IF;
    IF NOT rel = ANY (altered) THEN altered := altered || rel; END IF;
    objs := objs || jsonb_build_object('tag', tag, 'type', r.object_type, 'identity', r.object_identity);
  END LOOP;
  SELECT coalesce(array_agg(a), '{}') INTO altered FROM unnest(altered) a WHERE NOT a = ANY (gone);
  IF cardinality(altered) > 0 THEN PERFORM pgtide.ddl_emit_tables(tag, path, query, altered, '{}', objs); END IF;
  FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table' LOOP
    DELETE FROM pgtide.ddl_source_snapshot WHERE table_oid = r.objid RETURNING snapshot INTO before_snap;
    IF NOT FOUND THEN CONTINUE; END IF;
    dropped := dropped || jsonb_build_object('oid', r.objid::bigint, 'schema', r.schema_name, 'name', r.object_name, 'before', before_snap);
  END LOOP;
  IF tag = 'DROP SCHEMA' THEN schemas := pgtide.ddl_schemas_dropped(); END IF;
  IF jsonb_array_length(dropped) = 0 AND jsonb_array_length(schemas) = 0 THEN RETURN; END IF;
  PERFORM pgtide.ddl_emit(jsonb_build_object('v', 1, 'event', 'sql_drop', 'tag', tag, 'statement', query,
    'search_path', path, 'dropped', dropped)
    || CASE WHEN jsonb_array_length(schemas) > 0 THEN jsonb_build_object('schemas', schemas) ELSE '{}'::jsonb END);
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_capture(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtide.ddl_capture_drop(text, text, text) FROM PUBLIC;

-- pgtide ddl exec: after the user's statements, in their transaction, one message for every table
-- in scope whose snapshot changed, and one for the tables that are gone.
CREATE OR REPLACE FUNCTION pgtide.ddl_exec_emit(path text, query text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  r record;
  rels oid[];
  dropped jsonb := '[]';
BEGIN
  SELECT array_agg(c.oid) INTO rels FROM pg_class c WHERE c.relkind IN ('r', 'p') AND pgtide.ddl_in_scope(c.oid);
  IF rels IS NOT NULL THEN PERFORM pgtide.ddl_emit_tables('EXEC', path, query, rels, '{}', '[]'); END IF;
  FOR r IN SELECT s.table_oid, s.snapshot FROM pgtide.ddl_source_snapshot s WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.table_oid) LOOP
    DELETE FROM pgtide.ddl_source_snapshot WHERE table_oid = r.table_oid;
    dropped := dropped || jsonb_build_object('oid', r.table_oid::bigint, 'schema', r.snapshot->>'schema', 'name', r.snapshot->>'name', 'before', r.snapshot);
  END LOOP;
  IF jsonb_array_length(dropped) = 0 THEN RETURN; END IF;
  PERFORM pgtide.ddl_emit(jsonb_build_object('v', 1, 'event', 'sql_drop', 'tag', 'EXEC', 'statement', query,
    'search_path', path, 'dropped', dropped));
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_exec_emit(text, text) FROM PUBLIC;
`;

/** The event triggers themselves: the part that needs a superuser. */
const TRIGGERS_SQL = `
-- The trigger functions only hand the session's search_path and statement to the inner
-- functions (which pin their own search_path); they run as the owner to call them.
CREATE OR REPLACE FUNCTION pgtide.ddl_on_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
  PERFORM pgtide.ddl_capture(TG_TAG, pg_catalog.current_setting('search_path'), pg_catalog.current_query());
END
$fn$;

CREATE OR REPLACE FUNCTION pgtide.ddl_on_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
  PERFORM pgtide.ddl_note_rewrite(pg_catalog.pg_event_trigger_table_rewrite_oid(), pg_catalog.pg_event_trigger_table_rewrite_reason());
END
$fn$;

CREATE OR REPLACE FUNCTION pgtide.ddl_on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
  PERFORM pgtide.ddl_capture_drop(TG_TAG, pg_catalog.current_setting('search_path'), pg_catalog.current_query());
END
$fn$;


DROP EVENT TRIGGER IF EXISTS pgtide_ddl_command_end;
DROP EVENT TRIGGER IF EXISTS pgtide_ddl_sql_drop;
DROP EVENT TRIGGER IF EXISTS pgtide_ddl_table_rewrite;
CREATE EVENT TRIGGER pgtide_ddl_command_end ON ddl_command_end EXECUTE FUNCTION pgtide.ddl_on_command_end();
CREATE EVENT TRIGGER pgtide_ddl_sql_drop ON sql_drop EXECUTE FUNCTION pgtide.ddl_on_sql_drop();
CREATE EVENT TRIGGER pgtide_ddl_table_rewrite ON table_rewrite EXECUTE FUNCTION pgtide.ddl_on_table_rewrite();
`;

const UNINSTALL_SQL = `
DROP EVENT TRIGGER IF EXISTS pgtide_ddl_command_end;
DROP EVENT TRIGGER IF EXISTS pgtide_ddl_sql_drop;
DROP EVENT TRIGGER IF EXISTS pgtide_ddl_table_rewrite;
DROP FUNCTION IF EXISTS pgtide.ddl_on_command_end();
DROP FUNCTION IF EXISTS pgtide.ddl_on_sql_drop();
DROP FUNCTION IF EXISTS pgtide.ddl_on_table_rewrite();
DROP FUNCTION IF EXISTS pgtide.ddl_note_rewrite(oid, int);
DROP FUNCTION IF EXISTS pgtide.ddl_capture(text, text, text);
DROP FUNCTION IF EXISTS pgtide.ddl_capture_drop(text, text, text);
DROP FUNCTION IF EXISTS pgtide.ddl_exec_emit(text, text);
DROP FUNCTION IF EXISTS pgtide.ddl_emit_tables(text, text, text, oid[], oid[], jsonb);
DROP FUNCTION IF EXISTS pgtide.ddl_emit(jsonb);
DROP FUNCTION IF EXISTS pgtide.ddl_in_scope(oid);
DROP FUNCTION IF EXISTS pgtide.ddl_emit_object(text, text, text, jsonb);
DROP FUNCTION IF EXISTS pgtide.ddl_object_schema_in_scope(text);
DROP FUNCTION IF EXISTS pgtide.ddl_table_snapshot(oid);
${MISSING_VALUE_UNINSTALL}
${SCOPE_UNINSTALL_SQL}${SCHEMA_UNINSTALL_SQL}DROP FUNCTION IF EXISTS pgtide.hmac_sha256(bytea, bytea);
DROP TABLE IF EXISTS pgtide.ddl_source_snapshot;
DROP TABLE IF EXISTS pgtide.ddl_scope;
DROP TABLE IF EXISTS pgtide.ddl_key;
`;

export interface DdlInstallOptions {
  /** pgtide's publications: their tables are in scope. */
  readonly publications: readonly string[];
  /** Schemas where a newly created table (with a primary key) joins the publications; empty: none. */
  readonly newTableSchemas: readonly string[];
  /** Without the event triggers (no superuser needed): schema changes then go through `pgtide ddl exec`. */
  readonly execOnly?: boolean;
}

export interface DdlInstallReport {
  readonly tables: number;
  readonly keyCreated: boolean;
}

/**
 * Installs (or refreshes) the triggers and records the current snapshot of
 * every table in scope, all in one transaction. The signing key is kept
 * across re-installs, so messages already in the slot still verify.
 */
export async function installDdlCapture(sql: postgres.Sql, options: DdlInstallOptions): Promise<DdlInstallReport> {
  const [role] = await sql.unsafe<{ superuser: boolean; user: string }[]>(`SELECT rolsuper AS superuser, current_user AS user FROM pg_roles WHERE rolname = current_user`)
    .catch((e: unknown) => { throw fromServerError(e, 'source'); });
  if (!role?.superuser && !options.execOnly) {
    throw new PgtideError('PERMISSION_DENIED', `installing DDL capture needs a superuser on the source (event triggers can only be created by one), and "${role?.user ?? 'the source user'}" is not. Run \`pgtide ddl install\` with a superuser's connection string in source.url; or run \`pgtide ddl install --exec-only\` and make schema changes with \`pgtide ddl exec --config <file> "<sql>"\`, which runs them on the source together with their signed message. Without either, pgtide still adds columns it sees the source send that the target lacks (additive only), and stops with COLUMN_MISMATCH for any other change (see docs/ddl.md).`);
  }
  try {
    return await sql.begin(async (tx) => {
      await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('pgtide.ddl_install'))`);
      await tx.unsafe(INSTALL_SQL);
      await tx.unsafe(options.execOnly ? `DROP EVENT TRIGGER IF EXISTS pgtide_ddl_command_end; DROP EVENT TRIGGER IF EXISTS pgtide_ddl_sql_drop; DROP EVENT TRIGGER IF EXISTS pgtide_ddl_table_rewrite;` : TRIGGERS_SQL);
      const inserted = await tx.unsafe(`INSERT INTO pgtide.ddl_key VALUES (1, decode($1, 'hex')) ON CONFLICT (id) DO NOTHING RETURNING id`, [randomBytes(32).toString('hex')]);
      for (const publication of options.publications) {
        await tx.unsafe(`INSERT INTO pgtide.ddl_scope VALUES ($1, $2::text::boolean, $3::text[]) ON CONFLICT (publication) DO UPDATE SET add_new_tables = EXCLUDED.add_new_tables, schemas = EXCLUDED.schemas`,
          [publication, String(options.newTableSchemas.length > 0), textArrayLiteral(options.newTableSchemas)]);
      }
      const tables = await tx.unsafe<{ oid: string }[]>(`
        INSERT INTO pgtide.ddl_source_snapshot
        SELECT c.oid, pgtide.ddl_table_snapshot(c.oid) FROM pg_class c
         WHERE c.relkind IN ('r', 'p') AND pgtide.ddl_in_scope(c.oid)
        ON CONFLICT (table_oid) DO UPDATE SET snapshot = EXCLUDED.snapshot
        RETURNING table_oid::text AS oid`);
      await tx.unsafe(SCOPE_INSTALL_SQL);
      await tx.unsafe(SCHEMA_INSTALL_SQL);
      return { tables: tables.length, keyCreated: inserted.length > 0 };
    });
  } catch (error) {
    throw fromServerError(error, 'source');
  }
}

export async function uninstallDdlCapture(sql: postgres.Sql): Promise<void> {
  try {
    await sql.begin(async (tx) => { await tx.unsafe(UNINSTALL_SQL); });
  } catch (error) {
    throw fromServerError(error, 'source');
  }
}

/** True when the capture triggers are installed on the source. */
export async function ddlCaptureInstalled(sql: postgres.Sql): Promise<boolean> {
  const [row] = await sql.unsafe<{ present: boolean }[]>(`SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgtide_ddl_command_end') AS present`)
    .catch((e: unknown) => { throw fromServerError(e, 'source'); });
  return row?.present ?? false;
}

/**
 * The signing key, or undefined when capture was never installed or pgtide's
 * source role may not read it (then every DDL message is refused as unsigned).
 */
export async function readDdlKey(sql: postgres.Sql): Promise<Uint8Array | undefined> {
  try {
    const [readable] = await sql.unsafe<{ ok: boolean }[]>(`SELECT to_regclass('pgtide.ddl_key') IS NOT NULL AND has_table_privilege('pgtide.ddl_key', 'SELECT') AS ok`);
    if (!readable?.ok) return undefined;
    const [row] = await sql.unsafe<{ key: string | null }[]>(`SELECT encode(key, 'hex') AS key FROM pgtide.ddl_key WHERE id = 1`);
    return row?.key ? Uint8Array.from(Buffer.from(row.key, 'hex')) : undefined;
  } catch (error) {
    throw fromServerError(error, 'source');
  }
}

/**
 * `pgtide ddl exec`: runs schema-changing statements on the source and, in
 * the same transaction, emits the signed messages for the tables they
 * changed, for sources where the event triggers cannot be installed. The
 * messages follow all the statements, so the string should hold DDL only:
 * rows it writes after a change would reach the target before that change.
 */
export async function execWithDdl(sql: postgres.Sql, statements: string): Promise<void> {
  try {
    await sql.begin(async (tx) => {
      await tx.unsafe(statements);
      await tx.unsafe(`SELECT pgtide.ddl_exec_emit(current_setting('search_path'), $1)`, [statements]);
    });
  } catch (error) {
    throw fromServerError(error, 'source');
  }
}
