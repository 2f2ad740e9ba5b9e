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
 * `pgtide.ddl_missing_values(rel)`: `{attnum: text}` for the table's columns
 * that have a stored missing value, or NULL. One call per snapshot, and only
 * for a table that has such a column or is partitioned (a partitioned table
 * stores none; its partitions hold the one value the ALTER computed, the same
 * for each: one statement, one now()). The value is the element of the
 * one-element array `attmissingval`, read back as text[]: that needs no cast
 * to the column's type, also works for a column of an array type, and a type
 * whose array delimiter is not a comma (box) shows as several elements and
 * gives nothing. The settings fix the text form (ISO dates, UTC, exact floats,
 * hex bytea), whatever the DDL session's own settings, so the target reads
 * the same value back. Any error gives NULL (the target then evaluates the
 * default itself) rather than failing the user's DDL.
 */
export const MISSING_VALUE_FUNCTION = `
CREATE OR REPLACE FUNCTION pgtide.ddl_missing_values(rel oid) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, MDY' SET intervalstyle = 'postgres' SET timezone = 'UTC'
SET extra_float_digits = 3 SET bytea_output = 'hex'
AS $fn$
DECLARE
  m jsonb;
BEGIN
  IF (SELECT relkind FROM pg_class WHERE oid = rel) <> 'p' THEN
    -- OFFSET 0: the array is read once per column, not once per reference.
    SELECT jsonb_object_agg(s.attnum::text, s.v[1]) INTO m
      FROM (SELECT a.attnum, a.attmissingval::text::text[] AS v FROM pg_attribute a
             WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.atthasmissing OFFSET 0) s
     WHERE cardinality(s.v) = 1 AND s.v[1] IS NOT NULL;
  ELSE
    SELECT jsonb_object_agg(s.attnum::text, s.v[1]) INTO m
      FROM (SELECT DISTINCT ON (pa.attnum) pa.attnum, l.attmissingval::text::text[] AS v
              FROM pg_attribute pa
              CROSS JOIN pg_partition_tree(rel) t
              JOIN pg_attribute l ON l.attrelid = t.relid AND l.attname = pa.attname
             WHERE pa.attrelid = rel AND pa.attnum > 0 AND NOT pa.attisdropped AND t.isleaf AND l.atthasmissing
             ORDER BY pa.attnum, t.relid) s
     WHERE cardinality(s.v) = 1 AND s.v[1] IS NOT NULL;
  END IF;
  RETURN m;
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION pgtide.ddl_missing_values(oid) FROM PUBLIC;`;

export const MISSING_VALUE_UNINSTALL = `DROP FUNCTION IF EXISTS pgtide.ddl_missing_values(oid);`;

/**
 * Joined once to the snapshot's pg_class row (alias `c`): `mv.m`, the map
 * above, for a table that has a column with a missing value or is partitioned.
 * OFFSET 0 keeps the planner from pulling the subquery up, which would put
 * the function call into every reference to `mv.m` (once per column, twice).
 */
export const MISSING_VALUE_SNAPSHOT_JOIN = `
  CROSS JOIN LATERAL (SELECT CASE WHEN c.relkind = 'p' OR EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = c.oid AND x.atthasmissing)
                                  THEN pgtide.ddl_missing_values(c.oid) END AS m OFFSET 0) mv`;

/**
 * The snapshot's column object gains `missing` only when the column has a
 * stored missing value, so snapshots of other columns stay as they were (and
 * equal to the ones stored before this field existed). Appended (`||`) to the
 * column's jsonb_build_object in pgtide.ddl_table_snapshot, over alias `a`
 * (pg_attribute) and the join above.
 */
export const MISSING_VALUE_SNAPSHOT_FIELD = `
               || CASE WHEN mv.m ? a.attnum::text THEN jsonb_build_object('missing', mv.m->>a.attnum::text) ELSE '{}'::jsonb END`;
