/**
 * Reads the schema model (model.ts) of a set of tables from one server, source
 * or target, PostgreSQL 14–18. Scope: the named tables, their partitioned
 * ancestors, the partitions of the named partitioned tables, and what those
 * depend on: schemas, user types (recursively: array elements, domain bases,
 * composite attributes, range subtypes), collations, and the sequences the
 * tables own or name in a default. Objects that belong to an extension are
 * left out (extensions are not copied; docs/schema.md).
 *
 * Everything is read in one REPEATABLE READ transaction with an empty
 * search_path, so the server's deparsers qualify every name they print
 * (pg_dump does the same) and the texts mean the same on the target.
 */
import type postgres from 'postgres';
import { fromServerError } from '../core/errors.js';
import { qualify, textArrayLiteral, type QualifiedName } from '../core/sql.js';
import { objectKey, orderTypes, type Collation, type Column, type Constraint, type ConstraintKind, type Index, type SchemaModel, type Sequence, type SequenceOptions, type Table, type UserType } from './model.js';

/** Which server is read; errors name it. */
export type Side = 'source' | 'target';

export interface ReadScope {
  /** Tables to read (missing ones are simply absent from the model). */
  readonly tables: readonly QualifiedName[];
  /** Also read these types, sequences and collations by name when they exist (the target side of a diff). */
  readonly types?: readonly QualifiedName[];
  readonly sequences?: readonly QualifiedName[];
  readonly collations?: readonly QualifiedName[];
  /** Also list these schemas when they exist, even empty. */
  readonly schemas?: readonly string[];
}

const SCOPE_TABLES = `
  WITH RECURSIVE named AS (
    SELECT c.oid FROM unnest($1::text[]) AS n(name) JOIN pg_class c ON c.oid = to_regclass(n.name)
     WHERE c.relkind IN ('r', 'p')
  ), up AS (
    SELECT oid FROM named
    UNION
    SELECT i.inhparent FROM pg_inherits i JOIN up ON i.inhrelid = up.oid JOIN pg_class c ON c.oid = i.inhrelid
     WHERE c.relispartition
  ), down AS (
    SELECT oid FROM named
    UNION
    SELECT i.inhrelid FROM pg_inherits i JOIN down ON i.inhparent = down.oid JOIN pg_class c ON c.oid = i.inhrelid
     WHERE c.relispartition
  )
  SELECT oid::text AS oid FROM up UNION SELECT oid::text FROM down`;

interface TableRow {
  oid: string; schema: string; name: string; kind: string; replident: string; partkey: string | null; bound: string | null;
  parent_schema: string | null; parent_name: string | null; comment: string | null; replident_index: string | null; depth: number;
}

const TABLES = `
  SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind, c.relreplident AS replident,
         CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
         CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
         pn.nspname AS parent_schema, p.relname AS parent_name,
         obj_description(c.oid, 'pg_class') AS comment,
         (SELECT ic.relname FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid WHERE x.indrelid = c.oid AND x.indisreplident) AS replident_index,
         CASE WHEN c.relispartition THEN (SELECT count(*)::int FROM pg_partition_ancestors(c.oid)) ELSE 1 END AS depth
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_inherits i ON c.relispartition AND i.inhrelid = c.oid
    LEFT JOIN pg_class p ON p.oid = i.inhparent
    LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
   WHERE c.oid = ANY ($1::oid[])
   ORDER BY depth, n.nspname, c.relname`;

interface ColumnRow {
  table_oid: string; name: string; type: string; type_oid: string; not_null: boolean; not_null_name: string | null; identity: string; generated: string;
  default_expr: string | null; coll_schema: string | null; coll_name: string | null; comment: string | null;
}

const COLUMNS = `
  SELECT a.attrelid::text AS table_oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::text AS type_oid,
         a.attnotnull AS not_null, a.attidentity AS identity, a.attgenerated AS generated,
         -- PostgreSQL 18 names NOT NULL constraints (contype n); no such rows before 18.
         (SELECT nn.conname FROM pg_constraint nn WHERE nn.conrelid = a.attrelid AND nn.contype = 'n' AND nn.conkey[1] = a.attnum) AS not_null_name,
         pg_get_expr(d.adbin, d.adrelid) AS default_expr,
         CASE WHEN a.attcollation <> t.typcollation THEN cn.nspname END AS coll_schema,
         CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS coll_name,
         col_description(a.attrelid, a.attnum) AS comment
    FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    LEFT JOIN pg_collation co ON co.oid = a.attcollation
    LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
   WHERE a.attrelid = ANY ($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
   ORDER BY a.attrelid, a.attnum`;

interface SequenceRow {
  schema: string; name: string; data_type: string; start: string; increment: string; min: string; max: string; cache: string; cycle: boolean;
  table_oid: string | null; column_name: string | null; deptype: string; comment: string | null;
}

/** Sequences owned by a column (serial: deptype a; identity: i) or named in a default (n, from pg_attrdef). */
const SEQUENCES = `
  WITH used AS (
    SELECT d.objid AS seq, d.refobjid AS table_oid, d.refobjsubid AS attnum, d.deptype
      FROM pg_depend d
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.deptype IN ('a', 'i') AND d.refobjid = ANY ($1::oid[]) AND d.refobjsubid > 0
    UNION
    SELECT d.refobjid, NULL, NULL, 'n'
      FROM pg_attrdef ad JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
     WHERE ad.adrelid = ANY ($1::oid[])
       AND (SELECT relkind FROM pg_class WHERE oid = d.refobjid) = 'S'
    UNION
    SELECT c.oid, NULL, NULL, 'n' FROM unnest($2::text[]) AS n(name) JOIN pg_class c ON c.oid = to_regclass(n.name) WHERE c.relkind = 'S'
  )
  SELECT DISTINCT ON (sn.nspname, sc.relname)
         sn.nspname AS schema, sc.relname AS name, format_type(s.seqtypid, NULL) AS data_type,
         s.seqstart::text AS start, s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max,
         s.seqcache::text AS cache, s.seqcycle AS cycle,
         o.table_oid::text AS table_oid, a.attname AS column_name, coalesce(o.deptype, 'n') AS deptype,
         obj_description(sc.oid, 'pg_class') AS comment
    FROM used u
    JOIN pg_sequence s ON s.seqrelid = u.seq
    JOIN pg_class sc ON sc.oid = s.seqrelid
    JOIN pg_namespace sn ON sn.oid = sc.relnamespace
    LEFT JOIN (SELECT d.objid, d.refobjid AS table_oid, d.refobjsubid, d.deptype FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0) o
           ON o.objid = sc.oid
    LEFT JOIN pg_attribute a ON a.attrelid = o.table_oid AND a.attnum = o.refobjsubid
   WHERE NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = sc.oid AND e.deptype = 'e')
   ORDER BY sn.nspname, sc.relname, o.table_oid NULLS LAST`;

interface ConstraintRow {
  table_oid: string; name: string; type: string; definition: string; ref_schema: string | null; ref_name: string | null; inherited: boolean; comment: string | null;
}

/**
 * Constraints declared on the table itself: one a partition inherited from its parent
 * (conparentid set, or a CHECK that is not local) is created by the parent's.
 * NOT NULL constraints (contype n, PostgreSQL 18) are the columns' nullability.
 */
const CONSTRAINTS = `
  SELECT con.conrelid::text AS table_oid, con.conname AS name, con.contype AS type, pg_get_constraintdef(con.oid) AS definition,
         rn.nspname AS ref_schema, r.relname AS ref_name,
         (con.conparentid <> 0 OR NOT con.conislocal) AS inherited,
         obj_description(con.oid, 'pg_constraint') AS comment
    FROM pg_constraint con
    LEFT JOIN pg_class r ON r.oid = con.confrelid
    LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
   WHERE con.conrelid = ANY ($1::oid[]) AND con.contype IN ('p', 'u', 'c', 'f', 'x')
   ORDER BY con.conrelid, con.contype, con.conname`;

interface IndexRow { table_oid: string; name: string; definition: string; comment: string | null }

/** Indexes that back no constraint of their table, are valid, and are not a partition's share of a parent's index. */
const INDEXES = `
  SELECT x.indrelid::text AS table_oid, ic.relname AS name, pg_get_indexdef(x.indexrelid) AS definition,
         obj_description(x.indexrelid, 'pg_class') AS comment
    FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
   WHERE x.indrelid = ANY ($1::oid[]) AND x.indisvalid
     AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = x.indexrelid AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x'))
     AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = x.indexrelid)
   ORDER BY x.indrelid, ic.relname`;

interface TypeRow {
  oid: string; schema: string; name: string; typtype: string; comment: string | null; deps: string[];
  labels: string[] | null; base_type: string | null; not_null: boolean; default_text: string | null;
  coll_schema: string | null; coll_name: string | null;
  checks: { name: string; definition: string }[] | null;
  attributes: { name: string; type: string; coll_schema: string | null; coll_name: string | null }[] | null;
  subtype: string | null; opclass: string | null; subdiff: string | null; multi_schema: string | null; multi_name: string | null;
  range_coll_schema: string | null; range_coll_name: string | null; extension: boolean;
}

/** The user types reachable from $1 (type oids), plus those named in $2; extension members flagged. */
const TYPES = `
  WITH RECURSIVE start AS (
    SELECT unnest($1::oid[]) AS oid
    UNION SELECT to_regtype(n.name)::oid FROM unnest($2::text[]) AS n(name) WHERE to_regtype(n.name) IS NOT NULL
  ), reach(oid) AS (
    SELECT oid FROM start
    UNION
    SELECT d.dep FROM reach JOIN pg_type t ON t.oid = reach.oid
     CROSS JOIN LATERAL (
       SELECT e.oid FROM pg_type e WHERE e.typarray = t.oid
       UNION ALL SELECT t.typbasetype WHERE t.typtype = 'd'
       UNION ALL SELECT a.atttypid FROM pg_attribute a
                  WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE t.typtype = 'r' AND r.rngtypid = t.oid
       UNION ALL SELECT r.rngtypid FROM pg_range r WHERE t.typtype = 'm' AND r.rngmultitypid = t.oid
     ) AS d(dep)
  ), direct(oid, dep) AS (
    -- What a type is built from, seen through arrays, for ordering.
    SELECT t.oid, coalesce((SELECT e.oid FROM pg_type e WHERE e.typarray = x.dep), x.dep)
      FROM reach JOIN pg_type t ON t.oid = reach.oid
     CROSS JOIN LATERAL (
       SELECT t.typbasetype WHERE t.typtype = 'd'
       UNION ALL SELECT a.atttypid FROM pg_attribute a
                  WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE t.typtype = 'r' AND r.rngtypid = t.oid
     ) AS x(dep)
  )
  SELECT t.oid::text AS oid, n.nspname AS schema, t.typname AS name, t.typtype::text AS typtype,
         obj_description(t.oid, 'pg_type') AS comment,
         to_json(array(SELECT dep::text FROM direct WHERE direct.oid = t.oid)) AS deps,
         CASE WHEN t.typtype = 'e' THEN to_json(array(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder)) END AS labels,
         CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base_type,
         t.typnotnull AS not_null, t.typdefault AS default_text,
         CASE WHEN t.typtype = 'd' AND t.typcollation <> (SELECT typcollation FROM pg_type WHERE oid = t.typbasetype) THEN cn.nspname END AS coll_schema,
         CASE WHEN t.typtype = 'd' AND t.typcollation <> (SELECT typcollation FROM pg_type WHERE oid = t.typbasetype) THEN co.collname END AS coll_name,
         CASE WHEN t.typtype = 'd' THEN (SELECT json_agg(json_build_object('name', c.conname, 'definition', pg_get_constraintdef(c.oid)) ORDER BY c.conname)
                                           FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c') END AS checks,
         CASE WHEN t.typtype = 'c' THEN (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                                                 'coll_schema', CASE WHEN a.attcollation <> at.typcollation THEN acn.nspname END,
                                                 'coll_name', CASE WHEN a.attcollation <> at.typcollation THEN aco.collname END) ORDER BY a.attnum)
                                           FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
                                           LEFT JOIN pg_collation aco ON aco.oid = a.attcollation
                                           LEFT JOIN pg_namespace acn ON acn.oid = aco.collnamespace
                                          WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END AS attributes,
         CASE WHEN t.typtype = 'r' THEN format_type(r.rngsubtype, NULL) END AS subtype,
         CASE WHEN t.typtype = 'r' AND NOT opc.opcdefault THEN quote_ident(opcn.nspname) || '.' || quote_ident(opc.opcname) END AS opclass,
         CASE WHEN t.typtype = 'r' AND r.rngsubdiff <> 0 THEN r.rngsubdiff::regproc::text END AS subdiff,
         CASE WHEN t.typtype = 'r' AND r.rngcollation <> 0 AND r.rngcollation <> (SELECT typcollation FROM pg_type WHERE oid = r.rngsubtype) THEN rcn.nspname END AS range_coll_schema,
         CASE WHEN t.typtype = 'r' AND r.rngcollation <> 0 AND r.rngcollation <> (SELECT typcollation FROM pg_type WHERE oid = r.rngsubtype) THEN rco.collname END AS range_coll_name,
         mn.nspname AS multi_schema, m.typname AS multi_name,
         EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid AND e.deptype = 'e') AS extension
    FROM (SELECT DISTINCT oid FROM reach) AS s
    JOIN pg_type t ON t.oid = s.oid
    JOIN pg_namespace n ON n.oid = t.typnamespace
    LEFT JOIN pg_collation co ON co.oid = t.typcollation
    LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
    LEFT JOIN pg_range r ON r.rngtypid = t.oid
    LEFT JOIN pg_opclass opc ON opc.oid = r.rngsubopc
    LEFT JOIN pg_namespace opcn ON opcn.oid = opc.opcnamespace
    LEFT JOIN pg_collation rco ON rco.oid = r.rngcollation
    LEFT JOIN pg_namespace rcn ON rcn.oid = rco.collnamespace
    LEFT JOIN pg_type m ON m.oid = r.rngmultitypid
    LEFT JOIN pg_namespace mn ON mn.oid = m.typnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND t.typtype IN ('e', 'd', 'c', 'r')
     AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
   ORDER BY n.nspname, t.typname`;

/** pg_collation read whole (to_jsonb), because its locale columns differ between 14, 15–16 and 17+. */
const COLLATIONS = `
  SELECT n.nspname AS schema, c.collname AS name, to_jsonb(c) AS row,
         EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_collation'::regclass AND e.objid = c.oid AND e.deptype = 'e') AS extension
    FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
   WHERE (n.nspname, c.collname) IN (SELECT s, m FROM unnest($1::text[], $2::text[]) AS u(s, m))
     AND n.nspname <> 'pg_catalog'
   ORDER BY 1, 2`;

const IDENTITY: Record<string, Column['identity']> = { a: 'always', d: 'by default' };
const GENERATED: Record<string, Column['generated']> = { s: 'stored', v: 'virtual' };
const CONSTRAINT_KIND: Record<string, ConstraintKind> = { p: 'primary key', u: 'unique', c: 'check', f: 'foreign key', x: 'exclusion' };
const REPLICA_IDENTITY = { d: 'default', n: 'nothing', f: 'full' } as const;

const name = (schema: string | null, n: string | null): QualifiedName | null => (schema !== null && n !== null ? { schema, name: n } : null);
const oids = (values: Iterable<string>): string => `{${[...values].join(',')}}`;
const groupBy = <T extends { table_oid: string | null }>(rows: readonly T[]): Map<string, T[]> => {
  const out = new Map<string, T[]>();
  for (const row of rows) {
    if (row.table_oid === null) continue;
    const list = out.get(row.table_oid) ?? [];
    list.push(row);
    out.set(row.table_oid, list);
  }
  return out;
};

export async function readSchemaModel(sql: postgres.Sql, scope: ReadScope, side: Side): Promise<SchemaModel> {
  try {
    return await sql.begin('isolation level repeatable read read only', async (tx) => {
      await tx.unsafe(`SET LOCAL search_path = ''`);
      return readIn(tx, scope);
    }) as SchemaModel;
  } catch (error) {
    throw fromServerError(error, side);
  }
}

async function readIn(tx: postgres.TransactionSql, scope: ReadScope): Promise<SchemaModel> {
  const skipped: string[] = [];
  const scopeRows = await tx.unsafe<{ oid: string }[]>(SCOPE_TABLES, [textArrayLiteral(scope.tables.map((t) => qualify(t.schema, t.name)))]);
  const tableOids = oids(scopeRows.map((r) => r.oid));
  const tableRows = await tx.unsafe<TableRow[]>(TABLES, [tableOids]);
  const columnRows = await tx.unsafe<ColumnRow[]>(COLUMNS, [tableOids]);
  const sequenceRows = await tx.unsafe<SequenceRow[]>(SEQUENCES, [tableOids, textArrayLiteral((scope.sequences ?? []).map((s) => qualify(s.schema, s.name)))]);
  const constraintRows = await tx.unsafe<ConstraintRow[]>(CONSTRAINTS, [tableOids]);
  const indexRows = await tx.unsafe<IndexRow[]>(INDEXES, [tableOids]);
  const typeRows = await tx.unsafe<TypeRow[]>(TYPES, [
    oids(new Set(columnRows.map((c) => c.type_oid))),
    textArrayLiteral((scope.types ?? []).map((t) => qualify(t.schema, t.name))),
  ]);

  const tableKeyByOid = new Map(tableRows.map((t) => [t.oid, { schema: t.schema, name: t.name }]));
  const columnsBy = groupBy(columnRows);
  const constraintsBy = groupBy(constraintRows);
  const indexesBy = groupBy(indexRows);

  const identitySequences = new Map<string, QualifiedName & { options: SequenceOptions }>();
  const sequences: Sequence[] = [];
  for (const s of sequenceRows) {
    const options: SequenceOptions = { dataType: s.data_type, start: s.start, increment: s.increment, min: s.min, max: s.max, cache: s.cache, cycle: s.cycle };
    if (s.deptype === 'i' && s.table_oid !== null && s.column_name !== null) {
      identitySequences.set(`${s.table_oid}/${s.column_name}`, { schema: s.schema, name: s.name, options });
      continue;
    }
    const owner = s.deptype === 'a' && s.table_oid !== null ? tableKeyByOid.get(s.table_oid) : undefined;
    sequences.push({
      schema: s.schema, name: s.name, options, comment: s.comment,
      ownedBy: owner && s.column_name !== null ? { table: owner, column: s.column_name } : null,
    });
  }

  const tables: Table[] = tableRows.map((t): Table => ({
    schema: t.schema,
    name: t.name,
    partitioned: t.kind === 'p',
    partitionKey: t.partkey,
    partitionOf: t.bound !== null && t.parent_schema !== null && t.parent_name !== null ? { parent: { schema: t.parent_schema, name: t.parent_name }, bound: t.bound } : null,
    columns: (columnsBy.get(t.oid) ?? []).map((c): Column => ({
      name: c.name,
      type: c.type,
      notNull: c.not_null,
      notNullConstraint: c.not_null ? c.not_null_name : null,
      default: c.default_expr,
      identity: IDENTITY[c.identity] ?? null,
      identitySequence: IDENTITY[c.identity] ? identitySequences.get(`${t.oid}/${c.name}`) ?? null : null,
      generated: GENERATED[c.generated] ?? null,
      collation: name(c.coll_schema, c.coll_name),
      comment: c.comment,
    })),
    constraints: (constraintsBy.get(t.oid) ?? []).filter((c) => !c.inherited).map((c): Constraint => ({
      name: c.name,
      kind: CONSTRAINT_KIND[c.type]!,
      definition: c.definition,
      references: c.type === 'f' ? name(c.ref_schema, c.ref_name) : null,
      comment: c.comment,
    })),
    indexes: (indexesBy.get(t.oid) ?? []).map((i): Index => ({ name: i.name, definition: i.definition, comment: i.comment })),
    replicaIdentity: t.replident === 'i' && t.replident_index !== null ? { index: t.replident_index } : REPLICA_IDENTITY[t.replident as keyof typeof REPLICA_IDENTITY] ?? 'default',
    comment: t.comment,
  }));

  const typeKeyByOid = new Map(typeRows.map((t) => [t.oid, objectKey(t)]));
  const types: UserType[] = [];
  for (const t of typeRows) {
    if (t.extension) { skipped.push(`type ${objectKey(t)} (belongs to an extension: install the extension on the target)`); continue; }
    const base = { schema: t.schema, name: t.name, comment: t.comment, dependsOn: t.deps.map((d) => typeKeyByOid.get(d)).filter((k): k is string => k !== undefined && k !== objectKey(t)) };
    switch (t.typtype) {
      case 'e': types.push({ ...base, kind: 'enum', labels: t.labels ?? [] }); break;
      case 'd': types.push({
        ...base, kind: 'domain', baseType: t.base_type ?? '', notNull: t.not_null, default: t.default_text,
        collation: name(t.coll_schema, t.coll_name), checks: t.checks ?? [],
      }); break;
      case 'c': types.push({
        ...base, kind: 'composite',
        attributes: (t.attributes ?? []).map((a) => ({ name: a.name, type: a.type, collation: name(a.coll_schema, a.coll_name) })),
      }); break;
      case 'r': types.push({
        ...base, kind: 'range', subtype: t.subtype ?? '', subtypeOpclass: t.opclass, subtypeDiff: t.subdiff,
        collation: name(t.range_coll_schema, t.range_coll_name), multirange: name(t.multi_schema, t.multi_name),
      }); break;
      default: break;
    }
  }

  const collationNames = new Map<string, QualifiedName>();
  const noteCollation = (c: QualifiedName | null): void => { if (c && c.schema !== 'pg_catalog') collationNames.set(objectKey(c), c); };
  for (const t of tables) for (const c of t.columns) noteCollation(c.collation);
  for (const t of types) {
    if (t.kind === 'domain' || t.kind === 'range') noteCollation(t.collation);
    if (t.kind === 'composite') for (const a of t.attributes) noteCollation(a.collation);
  }
  for (const c of scope.collations ?? []) noteCollation(c);
  const collationRows = collationNames.size === 0 ? [] : await tx.unsafe<{ schema: string; name: string; row: Record<string, unknown>; extension: boolean }[]>(COLLATIONS, [
    textArrayLiteral([...collationNames.values()].map((c) => c.schema)),
    textArrayLiteral([...collationNames.values()].map((c) => c.name)),
  ]);
  const collations: Collation[] = collationRows.filter((c) => !c.extension).map((c) => collationOf(c.schema, c.name, c.row));

  const schemas = new Set<string>();
  if (scope.schemas && scope.schemas.length > 0) {
    const found = await tx.unsafe<{ name: string }[]>(`SELECT nspname AS name FROM pg_namespace WHERE nspname = ANY ($1::text[])`, [textArrayLiteral(scope.schemas)]);
    for (const s of found) schemas.add(s.name);
  }
  for (const list of [tables, types, sequences, collations] as readonly (readonly QualifiedName[])[]) for (const o of list) schemas.add(o.schema);
  return {
    schemas: [...schemas].sort(),
    collations,
    types: orderTypes(types),
    sequences,
    tables,
    skipped,
  };
}

function collationOf(schema: string, collName: string, row: Record<string, unknown>): Collation {
  const text = (key: string): string | null => (typeof row[key] === 'string' && row[key] !== '' ? row[key] as string : null);
  const provider = row.collprovider === 'i' ? 'icu' : row.collprovider === 'b' ? 'builtin' : 'libc';
  return {
    schema,
    name: collName,
    provider,
    collate: text('collcollate'),
    ctype: text('collctype'),
    // 15–16 call it colliculocale, 17+ colllocale; 14 has neither (ICU kept it in collcollate).
    locale: text('colllocale') ?? text('colliculocale'),
    deterministic: row.collisdeterministic !== false,
    rules: text('collicurules'),
  };
}
