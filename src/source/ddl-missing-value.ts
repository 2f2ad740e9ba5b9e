/**
 * The value the source gave the existing rows of a column added with a
 * non-volatile default (`ADD COLUMN at timestamptz DEFAULT now()`).
 *
 * PostgreSQL evaluates such a default once, at the ALTER, and stores the
 * result in `pg_attribute.attmissingval` (`atthasmissing`) instead of
 * rewriting the table: every row that existed then reads that value. For a
 * constant it is the constant, but for a stable expression (`now()`,
 * `current_timestamp`, `statement_timestamp()`, `current_user`,
 * `current_setting(…)`) it is the source's value at the source's moment,
 * which the target cannot compute: replaying `DEFAULT now()` there would give
 * the existing rows the target's time of the apply. So the snapshot carries
 * the stored value as text (`missing`), and the target adds the column with
 * that literal as its default, then sets the real expression
 * (sinks/postgres/ddl-missing-value.ts). A table rewrite (volatile default,
 * identity) clears atthasmissing; that case is the re-copy's
 * (`ddl.rewriteVolatile`).
 * https://www.postgresql.org/docs/current/catalog-pg-attribute.html
 *
 * attmissingval is readable by PUBLIC on 14–18, so this also works in an
 * `--exec-only` install owned by a role without superuser.
 */

/**
 * `pgtide.ddl_missing_value(rel, attnum)`: the column's stored missing value
 * in its type's text form, or NULL. The settings fix that text form (ISO
 * dates, UTC, exact floats, hex bytea), so the target reads it back as the
 * same value whatever the DDL session's own settings. A value whose text
 * cannot be read back through an array of the column's type (a column of an
 * array type) gives NULL: the target then evaluates the default itself.
 */
export const MISSING_VALUE_FUNCTION = `
CREATE OR REPLACE FUNCTION pgtide.ddl_missing_value(rel oid, col int2) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, MDY' SET intervalstyle = 'postgres' SET timezone = 'UTC'
SET extra_float_digits = 3 SET bytea_output = 'hex'
AS $fn$
DECLARE
  arr text;
  typ text;
  v text;
BEGIN
  SELECT a.attmissingval::text, format_type(a.atttypid, a.atttypmod) INTO arr, typ
    FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum = col AND a.atthasmissing;
  IF arr IS NULL AND (SELECT relkind FROM pg_class WHERE oid = rel) = 'p' THEN
    -- A partitioned table stores no rows and no missing value; its partitions hold the one value
    -- the ALTER computed (one statement: now(), current_user … are the same for each).
    SELECT l.attmissingval::text, format_type(l.atttypid, l.atttypmod) INTO arr, typ
      FROM pg_attribute pa
      JOIN pg_partition_tree(rel) t ON t.isleaf
      JOIN pg_attribute l ON l.attrelid = t.relid AND l.attname = pa.attname AND l.atthasmissing
     WHERE pa.attrelid = rel AND pa.attnum = col
     LIMIT 1;
  END IF;
  IF arr IS NULL THEN RETURN NULL; END IF;
  EXECUTE format('SELECT (%L::%s[])[1]::text', arr, typ) INTO v;
  RETURN v;
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_missing_value(oid, int2) FROM PUBLIC;`;

export const MISSING_VALUE_UNINSTALL = `DROP FUNCTION IF EXISTS pgtide.ddl_missing_value(oid, int2);`;

/**
 * The snapshot's column object gains `missing` only when the column has a
 * stored missing value, so snapshots of other columns stay as they were (and
 * equal to the ones stored before this field existed). Appended (`||`) to the
 * column's jsonb_build_object in pgtide.ddl_table_snapshot, over aliases `a`
 * (pg_attribute) and `c` (pg_class). A partitioned table's columns are looked up
 * in its partitions.
 */
export const MISSING_VALUE_SNAPSHOT_FIELD = `
               || CASE WHEN a.atthasmissing OR c.relkind = 'p' THEN jsonb_strip_nulls(jsonb_build_object('missing', pgtide.ddl_missing_value(a.attrelid, a.attnum))) ELSE '{}'::jsonb END`;
