/**
 * Facts about a target table, beyond its columns, that decide how changes to
 * it may be applied. Read in the same catalog query as the columns
 * (`TABLE_FACTS` is a select-list fragment over `r.oid`, the table, with the
 * replica identity key's column names as `$2`), so they cost no extra round trip.
 */

export interface TableFacts {
  /**
   * A row trigger marked ENABLE ALWAYS or ENABLE REPLICA exists on the table
   * or one of its partitions: it fires under session_replication_role =
   * replica and exists to see every change, in source order. Net-effect
   * folding and reordering across tables are off for such a table.
   */
  readonly replicaTriggers: boolean;
  /**
   * A valid, immediate, non-partial unique index covers only replica identity
   * key columns, so a keyed UPDATE/DELETE can touch at most one row per key.
   * Without one, a target that holds duplicates of a key would see one
   * source change applied to several rows; keyed statements then check
   * their row count inside the statement (see guardRowCount in statements.ts).
   */
  readonly keyUnique: boolean;
  /**
   * A valid, immediate, non-partial unique index on exactly the key columns:
   * what `INSERT … ON CONFLICT (key)` infers as its arbiter (conflict-statements.ts).
   */
  readonly keyIndexExact: boolean;
}

export interface TableFactsRow {
  readonly replica_triggers: boolean;
  readonly key_unique: boolean;
  readonly key_index_exact: boolean;
}

/**
 * pg_partition_tree (PostgreSQL 12+) lists a partitioned table and all its
 * partitions (and nothing for a plain table): a partition's trigger fires for
 * rows routed through its parent.
 */
export const TABLE_FACTS = `
  EXISTS (SELECT 1 FROM pg_trigger g
           WHERE (g.tgrelid = r.oid OR g.tgrelid IN (SELECT p.relid FROM pg_partition_tree(r.oid) p))
             AND NOT g.tgisinternal AND g.tgenabled IN ('A', 'R')
             AND (g.tgtype & 1) = 1) AS replica_triggers,
  EXISTS (SELECT 1 FROM pg_index i
           WHERE i.indrelid = r.oid AND i.indisunique AND i.indisvalid AND i.indimmediate
             AND i.indpred IS NULL AND i.indexprs IS NULL
             AND cardinality($2::text::text[]) > 0
             AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) AS ik(attnum)
                              WHERE ik.attnum NOT IN (SELECT ka.attnum FROM pg_attribute ka
                                                       WHERE ka.attrelid = r.oid AND ka.attname = ANY ($2::text::text[])))) AS key_unique,
  EXISTS (SELECT 1 FROM pg_index i
           WHERE i.indrelid = r.oid AND i.indisunique AND i.indisvalid AND i.indimmediate
             AND i.indpred IS NULL AND i.indexprs IS NULL
             AND cardinality($2::text::text[]) > 0
             AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM unnest(i.indkey::int2[]) AS ik(attnum)
                    JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = ik.attnum)
                 = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text::text[]) AS k)) AS key_index_exact`;

export function tableFacts(row: TableFactsRow): TableFacts {
  return { replicaTriggers: row.replica_triggers, keyUnique: row.key_unique, keyIndexExact: row.key_index_exact };
}
