/**
 * Which sequences belong to a replication, what they look like, and where
 * they stand.
 *
 * A sequence is in scope when it feeds a column of a replicated table or of
 * one of its ancestors (partitioned roots, inheritance parents) —
 * serial/bigserial (pg_depend deptype 'a'), identity (deptype 'i'), or any
 * column default calling nextval() — or when the user names it in
 * `sequences.include` (sequences the application calls directly). A sequence
 * shared by several tables is listed once.
 *
 * Values are read for all sequences in one statement. Reading the sequence
 * relation gives the exact (last_value, is_called) pair but needs SELECT on
 * every sequence; when that is refused we fall back to pg_sequence_last_value()
 * (what the pg_sequences view shows), which needs only SELECT or USAGE but
 * returns NULL until the sequence has been called — so the position after a
 * `setval(s, n, false)` is unknown there. The reading says which mode was used.
 */
import type postgres from 'postgres';
import { fromServerError } from '../core/errors.js';
import { qualify, quoteIdent, type QualifiedName } from '../core/sql.js';

/** The parts of a sequence's definition that decide which values it hands out. */
export interface SequenceDefinition {
  /** 'smallint', 'integer' or 'bigint'. */
  readonly dataType: string;
  readonly start: bigint;
  readonly increment: bigint;
  readonly min: bigint;
  readonly max: bigint;
  readonly cache: bigint;
  readonly cycle: boolean;
}

/** How a sequence feeds a column. */
export type SequenceUse = 'serial' | 'identity' | 'default' | 'prefixed_default';

export interface SequenceColumnUse {
  readonly table: QualifiedName;
  readonly column: string;
  readonly how: SequenceUse;
}

export interface CatalogSequence extends QualifiedName {
  /** `"schema"."name"`, quoted for SQL. */
  readonly qualifiedName: string;
  readonly oid: number;
  readonly definition: SequenceDefinition;
  /** Columns fed by this sequence (empty for a sequence only named in `include`). */
  readonly usedBy: readonly SequenceColumnUse[];
  /** Named in the `include` list. */
  readonly included: boolean;
}

export interface SequenceScope {
  /** The replicated tables, or 'all' for every user table (a publication FOR ALL TABLES). */
  readonly tables: readonly QualifiedName[] | 'all';
  /** Sequences the application uses directly. */
  readonly include?: readonly QualifiedName[];
  /** With tables 'all': also list sequences that feed no column (used by the collision check). */
  readonly everySequence?: boolean;
}

export interface SequenceDiscovery {
  readonly sequences: readonly CatalogSequence[];
  /** Listed tables that do not exist on this server. */
  readonly missingTables: readonly QualifiedName[];
  /** `include` entries that are not sequences on this server. */
  readonly missingIncludes: readonly QualifiedName[];
}

/** Schemas that never hold user sequences in scope (pgtide's own state lives in `pgtide`). */
const SYSTEM_SCHEMA_FILTER = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgtide') AND n.nspname NOT LIKE 'pg\\_%'`;

interface DiscoveryRow extends DefinitionColumns {
  readonly oid: string;
  readonly schema: string;
  readonly name: string;
  readonly included: boolean;
  readonly uses: readonly (readonly [string, string, string, string])[] | null;
}

/**
 * Lists the sequences in scope with their definitions. One statement; works on
 * PostgreSQL 14–18 (pg_sequence exists since 10).
 */
export async function discoverSequences(sql: postgres.Sql, scope: SequenceScope, role = 'source'): Promise<SequenceDiscovery> {
  const all = scope.tables === 'all';
  const tables = all ? [] : scope.tables as readonly QualifiedName[];
  const include = scope.include ?? [];
  const query = `
    WITH RECURSIVE wanted AS (
      SELECT w.s AS nspname, w.r AS relname FROM unnest($1::text[], $2::text[]) AS w(s, r)
    ), listed AS (
      SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'f')
        AND (($5::boolean AND ${SYSTEM_SCHEMA_FILTER})
             OR (n.nspname, c.relname) IN (SELECT nspname, relname FROM wanted))
    ), tbl AS (
      -- The listed tables and all their ancestors. A publication without
      -- publish_via_partition_root lists partitions, but an identity column's
      -- sequence belongs to the partitioned root (pg_depend points at the root
      -- only), and rows inserted through a partition's parent take its values.
      SELECT oid FROM listed
      UNION
      SELECT h.inhparent FROM pg_inherits h JOIN tbl ON h.inhrelid = tbl.oid
    ), uses AS (
      -- serial/bigserial sequences are owned by their column (deptype 'a'), identity sequences internally (deptype 'i')
      SELECT d.objid AS seqoid, d.refobjid AS reloid, d.refobjsubid::int2 AS attnum,
             CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'serial' END AS how
      FROM pg_depend d JOIN tbl ON tbl.oid = d.refobjid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
        AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
      UNION
      -- a default nextval('seq') (the regclass form) depends on the sequence (deptype 'n')
      SELECT d.refobjid, ad.adrelid, ad.adnum,
             CASE WHEN pg_get_expr(ad.adbin, ad.adrelid) LIKE '%prefixed_nextval(%' THEN 'prefixed_default' ELSE 'default' END
      FROM pg_attrdef ad JOIN tbl ON tbl.oid = ad.adrelid
      JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
        AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
      UNION
      -- nextval('seq'::text) binds late and records no dependency; it is stored as
      -- nextval(('seq'::text)::regclass). Resolve the literal as the default would (with our search_path).
      SELECT to_regclass(replace(m.lit[1], '''''', ''''))::oid, ad.adrelid, ad.adnum,
             CASE WHEN m.expr LIKE '%prefixed_nextval(%' THEN 'prefixed_default' ELSE 'default' END
      FROM pg_attrdef ad JOIN tbl ON tbl.oid = ad.adrelid
      CROSS JOIN LATERAL (SELECT pg_get_expr(ad.adbin, ad.adrelid) AS expr) e
      CROSS JOIN LATERAL (SELECT e.expr, regexp_match(e.expr, 'nextval\\(\\(''((?:[^'']|'''')+)''::text\\)::regclass\\)') AS lit) m
      WHERE m.lit IS NOT NULL AND to_regclass(replace(m.lit[1], '''''', '''')) IS NOT NULL
    ), included AS (
      SELECT c.oid FROM unnest($3::text[], $4::text[]) AS i(s, r)
      JOIN pg_namespace n ON n.nspname = i.s
      JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = i.r AND c.relkind = 'S'
    ), every AS (
      SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE $6::boolean AND c.relkind = 'S' AND ${SYSTEM_SCHEMA_FILTER}
    ), scope AS (
      SELECT seqoid AS oid FROM uses UNION SELECT oid FROM included UNION SELECT oid FROM every
    )
    SELECT s.oid::text AS oid, n.nspname AS schema, s.relname AS name,
           format_type(ps.seqtypid, NULL) AS data_type,
           ps.seqstart::text AS start, ps.seqincrement::text AS increment,
           ps.seqmin::text AS min, ps.seqmax::text AS max, ps.seqcache::text AS cache, ps.seqcycle AS cycle,
           EXISTS (SELECT 1 FROM included i WHERE i.oid = s.oid) AS included,
           (SELECT json_agg(json_build_array(tn.nspname, t.relname, a.attname, u.how) ORDER BY tn.nspname, t.relname, a.attnum, u.how)
              FROM uses u JOIN pg_class t ON t.oid = u.reloid JOIN pg_namespace tn ON tn.oid = t.relnamespace
              JOIN pg_attribute a ON a.attrelid = u.reloid AND a.attnum = u.attnum
             WHERE u.seqoid = s.oid) AS uses
    FROM scope JOIN pg_class s ON s.oid = scope.oid AND s.relkind = 'S'
    JOIN pg_namespace n ON n.oid = s.relnamespace
    JOIN pg_sequence ps ON ps.seqrelid = s.oid
    ORDER BY n.nspname, s.relname`;
  const missingQuery = `
    SELECT 'table' AS kind, w.s AS schema, w.r AS name FROM unnest($1::text[], $2::text[]) AS w(s, r)
     WHERE NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = w.s AND c.relname = w.r AND c.relkind IN ('r', 'p', 'f'))
    UNION ALL
    SELECT 'include', i.s, i.r FROM unnest($3::text[], $4::text[]) AS i(s, r)
     WHERE NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = i.s AND c.relname = i.r AND c.relkind = 'S')`;
  const tableArgs = [tables.map((t) => t.schema), tables.map((t) => t.name)];
  const includeArgs = [include.map((t) => t.schema), include.map((t) => t.name)];
  let rows: DiscoveryRow[];
  let missing: { kind: string; schema: string; name: string }[];
  try {
    rows = [...await sql.unsafe<DiscoveryRow[]>(query, [...tableArgs, ...includeArgs, all, all && scope.everySequence === true])];
    missing = [...await sql.unsafe<{ kind: string; schema: string; name: string }[]>(missingQuery, [...tableArgs, ...includeArgs])];
  } catch (error) {
    throw fromServerError(error, role);
  }
  const sequences = rows.map((row): CatalogSequence => {
    const seen = new Set<string>();
    const usedBy: SequenceColumnUse[] = [];
    for (const [schema, table, column, how] of row.uses ?? []) {
      const key = `${schema}\u0000${table}\u0000${column}\u0000${how}`;
      if (seen.has(key)) continue;
      seen.add(key);
      usedBy.push({ table: { schema, name: table }, column, how: how as SequenceUse });
    }
    return {
      schema: row.schema,
      name: row.name,
      qualifiedName: qualify(row.schema, row.name),
      oid: Number(row.oid),
      definition: definitionFromRow(row),
      usedBy,
      included: row.included,
    };
  });
  return {
    sequences,
    missingTables: missing.filter((m) => m.kind === 'table').map(({ schema, name }) => ({ schema, name })),
    missingIncludes: missing.filter((m) => m.kind === 'include').map(({ schema, name }) => ({ schema, name })),
  };
}

/** pg_sequence columns as DefinitionColumns, bigints as text. */
const DEFINITION_COLUMNS = `format_type(ps.seqtypid, NULL) AS data_type, ps.seqstart::text AS start, ps.seqincrement::text AS increment,
  ps.seqmin::text AS min, ps.seqmax::text AS max, ps.seqcache::text AS cache, ps.seqcycle AS cycle`;

/** Looks up the sequences named by $1 (schemas) and $2 (names): one row per name, in order (w.i). */
const SEQUENCES_BY_NAME = `FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(s, r, i)
  LEFT JOIN pg_namespace n ON n.nspname = w.s
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.r AND c.relkind = 'S'
  LEFT JOIN pg_sequence ps ON ps.seqrelid = c.oid
  ORDER BY w.i`;

interface DefinitionColumns {
  readonly data_type: string;
  readonly start: string;
  readonly increment: string;
  readonly min: string;
  readonly max: string;
  readonly cache: string;
  readonly cycle: boolean;
}

/** Bigint columns are selected as text: postgres.js would otherwise hand us strings or lossy numbers depending on options. */
export function definitionFromRow(row: DefinitionColumns): SequenceDefinition {
  return {
    dataType: row.data_type,
    start: BigInt(row.start),
    increment: BigInt(row.increment),
    min: BigInt(row.min),
    max: BigInt(row.max),
    cache: BigInt(row.cache),
    cycle: row.cycle,
  };
}

/** SQL for a column's use, e.g. `"s"."t"."id" (identity)`. */
export function describeUse(use: SequenceColumnUse): string {
  return `${qualify(use.table.schema, use.table.name)}.${quoteIdent(use.column)} (${use.how.replace('_', ' ')})`;
}

/** What a sequence's state is, as read from one server. */
export interface SequenceReading {
  /** False when the sequence no longer exists (dropped since discovery). */
  readonly present: boolean;
  /** False when the user may neither SELECT nor USAGE it: the value is unknown. */
  readonly readable: boolean;
  /** The sequence's last_value; null when unknown (catalog mode and never called). */
  readonly lastValue: bigint | null;
  /** null when unknown. In catalog mode a known value is always a called one. */
  readonly isCalled: boolean | null;
  readonly definition: SequenceDefinition | null;
}

export type SequenceReadMode = 'relation' | 'catalog';

export interface SequenceReadResult {
  readonly mode: SequenceReadMode;
  /** Why the reader fell back to catalog mode, when it did. */
  readonly note?: string | undefined;
  /** Parallel to the reader's sequence list. */
  readonly readings: readonly SequenceReading[];
}

interface ValueRow extends DefinitionColumns {
  readonly i: number;
  readonly present: boolean;
  readonly readable: boolean;
  readonly last_value: string | null;
  readonly is_called: boolean | null;
}

/**
 * Reads the values (and current definitions) of a fixed list of sequences in
 * one statement per call. SQL states after which the relation read cannot
 * succeed — missing privilege, a sequence dropped or replaced — switch this
 * reader to catalog mode; create a new reader after rediscovery to try again.
 */
export class SequenceReader {
  readonly #sql: postgres.Sql;
  readonly #sequences: readonly QualifiedName[];
  readonly #role: string;
  readonly #relationQuery: string;
  #mode: SequenceReadMode = 'relation';
  #note: string | undefined;
  #stale = false;

  constructor(sql: postgres.Sql, sequences: readonly QualifiedName[], role = 'source') {
    this.#sql = sql;
    this.#sequences = sequences;
    this.#role = role;
    // tableoid ties each value row to the relation the name resolved to in this same statement,
    // so the definition joined in is the one of the sequence actually read.
    const arms = sequences.map((s, i) => `SELECT ${i}::int AS i, tableoid AS rel, last_value, is_called FROM ${qualify(s.schema, s.name)}`);
    this.#relationQuery = `
      WITH v AS (${arms.join('\n UNION ALL ')})
      SELECT v.i, true AS present, true AS readable, v.last_value::text AS last_value, v.is_called,
             ${DEFINITION_COLUMNS}
      FROM v JOIN pg_sequence ps ON ps.seqrelid = v.rel
      ORDER BY v.i`;
  }

  get mode(): SequenceReadMode {
    return this.#mode;
  }

  /** True once a sequence in the list was dropped or replaced: rediscover and use a new reader. */
  get stale(): boolean {
    return this.#stale;
  }

  async read(): Promise<SequenceReadResult> {
    if (this.#sequences.length === 0) return { mode: this.#mode, note: this.#note, readings: [] };
    if (this.#mode === 'relation') {
      try {
        const rows = await this.#sql.unsafe<ValueRow[]>(this.#relationQuery);
        return { mode: 'relation', readings: this.#collect(rows) };
      } catch (error) {
        const state = (error as { code?: unknown }).code;
        // 42501: no SELECT on some sequence; 42P01/42809: a sequence was dropped or replaced.
        if (state !== '42501' && state !== '42P01' && state !== '42809') throw fromServerError(error, this.#role);
        this.#mode = 'catalog';
        this.#stale = state !== '42501';
        this.#note = state === '42501'
          ? `reading the sequences on the ${this.#role} needs SELECT on them (${(error as Error).message}); using pg_sequence_last_value(), which cannot see a value set with is_called = false. GRANT SELECT ON ALL SEQUENCES IN SCHEMA … TO the ${this.#role} user for exact values.`
          : `a sequence changed on the ${this.#role} since discovery (${(error as Error).message}); reading through the catalog until it is rediscovered.`;
      }
    }
    try {
      const rows = await this.#sql.unsafe<ValueRow[]>(`
        SELECT (w.i - 1)::int AS i, c.oid IS NOT NULL AS present,
               coalesce(has_sequence_privilege(c.oid, 'SELECT,USAGE'), false) AS readable,
               CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') THEN pg_sequence_last_value(c.oid::regclass)::text END AS last_value,
               CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') AND pg_sequence_last_value(c.oid::regclass) IS NOT NULL THEN true END AS is_called,
               ${DEFINITION_COLUMNS}
        ${SEQUENCES_BY_NAME}`, [this.#sequences.map((s) => s.schema), this.#sequences.map((s) => s.name)]);
      return { mode: 'catalog', note: this.#note, readings: this.#collect(rows) };
    } catch (error) {
      throw fromServerError(error, this.#role);
    }
  }

  #collect(rows: readonly ValueRow[]): SequenceReading[] {
    const readings: SequenceReading[] = this.#sequences.map(() => ({ present: false, readable: false, lastValue: null, isCalled: null, definition: null }));
    for (const row of rows) {
      readings[row.i] = {
        present: row.present,
        readable: row.readable,
        lastValue: row.last_value === null ? null : BigInt(row.last_value),
        isCalled: row.is_called,
        definition: row.present && row.data_type !== null ? definitionFromRow(row) : null,
      };
    }
    return readings;
  }
}

interface DefinitionRow extends DefinitionColumns {
  readonly i: number;
  readonly present: boolean;
}

/**
 * The current definitions of the named sequences (null where a name is not a
 * sequence), in the order given. One statement.
 */
export async function readSequenceDefinitions(sql: postgres.Sql, sequences: readonly QualifiedName[], role = 'target'): Promise<(SequenceDefinition | null)[]> {
  if (sequences.length === 0) return [];
  let rows: DefinitionRow[];
  try {
    rows = [...await sql.unsafe<DefinitionRow[]>(`
      SELECT (w.i - 1)::int AS i, ps.seqrelid IS NOT NULL AS present,
             ${DEFINITION_COLUMNS}
      ${SEQUENCES_BY_NAME}`, [sequences.map((s) => s.schema), sequences.map((s) => s.name)])];
  } catch (error) {
    throw fromServerError(error, role);
  }
  const result: (SequenceDefinition | null)[] = sequences.map(() => null);
  for (const row of rows) if (row.present) result[row.i] = definitionFromRow(row);
  return result;
}
