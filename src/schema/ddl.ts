/**
 * DDL from the schema model: one statement per step, each tagged with the
 * phase that orders it. Pure. Every identifier pgtide writes is quoted
 * (quoteIdent); the texts taken from the server's deparsers are already
 * qualified and quoted by the server (read with an empty search_path), so the
 * statements must run with an empty search_path too (bootstrap.ts does).
 *
 * Order: schemas, collations, types (each after the types it is built from),
 * sequences, tables (a partitioned parent before its partitions), then
 * constraints, indexes and replica identities once every table exists,
 * sequence ownership, foreign keys after all of that (they need the
 * referenced keys), comments last.
 */
import { qualify, quoteIdent, type QualifiedName } from '../core/sql.js';
import { objectKey, orderTypes, type Collation, type Column, type Constraint, type Index, type SchemaModel, type Sequence, type SequenceOptions, type Table, type UserType } from './model.js';

export const PHASES = ['schema', 'collation', 'type', 'sequence', 'table', 'column', 'constraint', 'index', 'replica identity', 'owned by', 'foreign key', 'comment'] as const;
export type Phase = (typeof PHASES)[number];

export interface Statement {
  readonly phase: Phase;
  /** What the statement creates or changes, for log lines and errors: `table "s"."t"`. */
  readonly object: string;
  readonly sql: string;
}

/** A standard-conforming string literal (the session sets standard_conforming_strings = on). */
export function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

const q = (n: QualifiedName): string => qualify(n.schema, n.name);

/** Stable sort by phase: statements of one phase keep the order they were generated in. */
export function inPhaseOrder(statements: readonly Statement[]): Statement[] {
  return statements.map((s, i) => ({ s, i })).sort((a, b) => PHASES.indexOf(a.s.phase) - PHASES.indexOf(b.s.phase) || a.i - b.i).map((x) => x.s);
}

export function createSchema(schema: string): Statement {
  return { phase: 'schema', object: `schema ${quoteIdent(schema)}`, sql: `CREATE SCHEMA ${quoteIdent(schema)}` };
}

export function createCollation(c: Collation): Statement {
  const options = [`provider = ${c.provider}`];
  if (c.provider === 'libc') {
    options.push(`lc_collate = ${literal(c.collate ?? 'C')}`, `lc_ctype = ${literal(c.ctype ?? c.collate ?? 'C')}`);
  } else {
    // PostgreSQL 14 kept an ICU locale in collcollate.
    options.push(`locale = ${literal(c.locale ?? c.collate ?? '')}`);
  }
  if (!c.deterministic) options.push('deterministic = false');
  if (c.rules !== null) options.push(`rules = ${literal(c.rules)}`);
  return { phase: 'collation', object: `collation ${q(c)}`, sql: `CREATE COLLATION ${q(c)} (${options.join(', ')})` };
}

export function createType(t: UserType): Statement[] {
  const object = `type ${q(t)}`;
  const out: Statement[] = [];
  switch (t.kind) {
    case 'enum':
      out.push({ phase: 'type', object, sql: `CREATE TYPE ${q(t)} AS ENUM (${t.labels.map(literal).join(', ')})` });
      break;
    case 'domain': {
      let sql = `CREATE DOMAIN ${q(t)} AS ${t.baseType}`;
      if (t.collation) sql += ` COLLATE ${q(t.collation)}`;
      if (t.default !== null) sql += ` DEFAULT ${t.default}`;
      if (t.notNull) sql += ' NOT NULL';
      for (const c of t.checks) sql += ` CONSTRAINT ${quoteIdent(c.name)} ${c.definition}`;
      out.push({ phase: 'type', object: `domain ${q(t)}`, sql });
      break;
    }
    case 'composite':
      out.push({
        phase: 'type', object,
        sql: `CREATE TYPE ${q(t)} AS (${t.attributes.map((a) => `${quoteIdent(a.name)} ${a.type}${a.collation ? ` COLLATE ${q(a.collation)}` : ''}`).join(', ')})`,
      });
      break;
    case 'range': {
      const options = [`SUBTYPE = ${t.subtype}`];
      if (t.subtypeOpclass !== null) options.push(`SUBTYPE_OPCLASS = ${t.subtypeOpclass}`);
      if (t.collation) options.push(`COLLATION = ${q(t.collation)}`);
      if (t.subtypeDiff !== null) options.push(`SUBTYPE_DIFF = ${t.subtypeDiff}`);
      if (t.multirange) options.push(`MULTIRANGE_TYPE_NAME = ${q(t.multirange)}`);
      out.push({ phase: 'type', object, sql: `CREATE TYPE ${q(t)} AS RANGE (${options.join(', ')})` });
      break;
    }
  }
  if (t.comment !== null) out.push(commentOn(`TYPE ${q(t)}`, object, t.comment));
  return out;
}

export function sequenceOptions(o: SequenceOptions, withType: boolean): string {
  return `${withType ? `AS ${o.dataType} ` : ''}START WITH ${o.start} INCREMENT BY ${o.increment} MINVALUE ${o.min} MAXVALUE ${o.max} CACHE ${o.cache} ${o.cycle ? 'CYCLE' : 'NO CYCLE'}`;
}

export function createSequence(s: Sequence): Statement[] {
  const object = `sequence ${q(s)}`;
  const out: Statement[] = [{ phase: 'sequence', object, sql: `CREATE SEQUENCE ${q(s)} ${sequenceOptions(s.options, true)}` }];
  const owned = ownedBy(s);
  if (owned) out.push(owned);
  if (s.comment !== null) out.push(commentOn(`SEQUENCE ${q(s)}`, object, s.comment));
  return out;
}

export function ownedBy(s: Sequence): Statement | undefined {
  if (!s.ownedBy) return undefined;
  return { phase: 'owned by', object: `sequence ${q(s)}`, sql: `ALTER SEQUENCE ${q(s)} OWNED BY ${q(s.ownedBy.table)}.${quoteIdent(s.ownedBy.column)}` };
}

/** A column as in CREATE TABLE or ALTER TABLE … ADD COLUMN. */
export function columnDefinition(c: Column): string {
  let sql = `${quoteIdent(c.name)} ${c.type}`;
  if (c.collation) sql += ` COLLATE ${q(c.collation)}`;
  if (c.generated !== null && c.default !== null) {
    sql += ` GENERATED ALWAYS AS (${c.default}) ${c.generated === 'stored' ? 'STORED' : 'VIRTUAL'}`;
  } else if (c.default !== null) {
    sql += ` DEFAULT ${c.default}`;
  }
  if (c.identity !== null) {
    const seq = c.identitySequence;
    sql += ` GENERATED ${c.identity === 'always' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${seq ? ` (SEQUENCE NAME ${q(seq)} ${sequenceOptions(seq.options, false)})` : ''}`;
  }
  // The name is what PostgreSQL 18 shows in pg_constraint; older servers accept and ignore it.
  if (c.notNull) sql += c.notNullConstraint !== null ? ` CONSTRAINT ${quoteIdent(c.notNullConstraint)} NOT NULL` : ' NOT NULL';
  return sql;
}

/** The statements that create a table: the table itself, its constraints, indexes, replica identity, comments. */
export function createTable(t: Table, model: Pick<SchemaModel, 'tables'>): Statement[] {
  const object = `table ${q(t)}`;
  const out: Statement[] = [];
  let sql: string;
  if (t.partitionOf) {
    sql = `CREATE TABLE ${q(t)} PARTITION OF ${q(t.partitionOf.parent)} ${t.partitionOf.bound}`;
  } else {
    sql = `CREATE TABLE ${q(t)} (${t.columns.map(columnDefinition).join(', ')})`;
  }
  if (t.partitioned && t.partitionKey !== null) sql += ` PARTITION BY ${t.partitionKey}`;
  out.push({ phase: 'table', object, sql });
  if (t.partitionOf) out.push(...partitionColumnDifferences(t, model));
  for (const c of t.constraints) out.push(addConstraint(t, c));
  for (const i of t.indexes) out.push(createIndex(t, i));
  const identity = replicaIdentity(t);
  if (identity) out.push(identity);
  out.push(...tableComments(t));
  return out;
}

/** A partition takes its columns from the parent; what it declares on its own (NOT NULL, a default) is added after. */
function partitionColumnDifferences(t: Table, model: Pick<SchemaModel, 'tables'>): Statement[] {
  const parent = model.tables.find((p) => t.partitionOf && p.schema === t.partitionOf.parent.schema && p.name === t.partitionOf.parent.name);
  if (!parent) return [];
  const out: Statement[] = [];
  for (const c of t.columns) {
    const pc = parent.columns.find((x) => x.name === c.name);
    if (!pc || c.generated !== null || c.identity !== null) continue;
    if (c.default !== pc.default) out.push(setDefault(t, c));
    if (c.notNull && !pc.notNull) out.push({ phase: 'column', object: `column ${quoteIdent(c.name)} of ${q(t)}`, sql: `ALTER TABLE ${q(t)} ALTER COLUMN ${quoteIdent(c.name)} SET NOT NULL` });
  }
  return out;
}

export function setDefault(t: QualifiedName, c: Pick<Column, 'name' | 'default'>): Statement {
  return {
    phase: 'column', object: `column ${quoteIdent(c.name)} of ${q(t)}`,
    sql: `ALTER TABLE ${q(t)} ALTER COLUMN ${quoteIdent(c.name)} ${c.default === null ? 'DROP DEFAULT' : `SET DEFAULT ${c.default}`}`,
  };
}

export function addColumn(t: QualifiedName, c: Column): Statement {
  return { phase: 'column', object: `column ${quoteIdent(c.name)} of ${q(t)}`, sql: `ALTER TABLE ${q(t)} ADD COLUMN ${columnDefinition(c)}` };
}

export function addConstraint(t: QualifiedName, c: Constraint): Statement {
  return {
    phase: c.kind === 'foreign key' ? 'foreign key' : 'constraint',
    object: `constraint ${quoteIdent(c.name)} on ${q(t)}`,
    sql: `ALTER TABLE ${q(t)} ADD CONSTRAINT ${quoteIdent(c.name)} ${c.definition}`,
  };
}

/**
 * pg_get_indexdef prints a partitioned table's index as `ON ONLY`, which creates it
 * invalid until every partition's index is attached (pg_dump attaches them one by
 * one). Without ONLY the server creates the partitions' indexes and attaches them.
 */
const ON_ONLY = /^(CREATE (?:UNIQUE )?INDEX (?:"(?:[^"]|"")*"|\S+) ON )ONLY /;

export function createIndex(t: QualifiedName, i: Index): Statement {
  return { phase: 'index', object: `index ${quoteIdent(i.name)} on ${q(t)}`, sql: i.definition.replace(ON_ONLY, '$1') };
}

export function replicaIdentity(t: Table): Statement | undefined {
  const r = t.replicaIdentity;
  if (r === 'default') return undefined;
  const clause = typeof r === 'object' ? `USING INDEX ${quoteIdent(r.index)}` : r.toUpperCase();
  return { phase: 'replica identity', object: `table ${q(t)}`, sql: `ALTER TABLE ${q(t)} REPLICA IDENTITY ${clause}` };
}

export function commentOn(target: string, object: string, comment: string | null): Statement {
  return { phase: 'comment', object, sql: `COMMENT ON ${target} IS ${comment === null ? 'NULL' : literal(comment)}` };
}

export function tableComments(t: Table): Statement[] {
  const out: Statement[] = [];
  if (t.comment !== null) out.push(commentOn(`TABLE ${q(t)}`, `table ${q(t)}`, t.comment));
  for (const c of t.columns) if (c.comment !== null) out.push(columnComment(t, c));
  for (const c of t.constraints) if (c.comment !== null) out.push(constraintComment(t, c));
  for (const i of t.indexes) if (i.comment !== null) out.push(indexComment(t, i));
  return out;
}

export function columnComment(t: QualifiedName, c: Pick<Column, 'name' | 'comment'>): Statement {
  return commentOn(`COLUMN ${q(t)}.${quoteIdent(c.name)}`, `column ${quoteIdent(c.name)} of ${q(t)}`, c.comment);
}
export function constraintComment(t: QualifiedName, c: Pick<Constraint, 'name' | 'comment'>): Statement {
  return commentOn(`CONSTRAINT ${quoteIdent(c.name)} ON ${q(t)}`, `constraint ${quoteIdent(c.name)} on ${q(t)}`, c.comment);
}
export function indexComment(t: QualifiedName, i: Pick<Index, 'name' | 'comment'>): Statement {
  return commentOn(`INDEX ${qualify(t.schema, i.name)}`, `index ${quoteIdent(i.name)} on ${q(t)}`, i.comment);
}

/** A partitioned parent before its partitions, whatever order the model lists them in. */
export function orderTables(tables: readonly Table[]): Table[] {
  const byKey = new Map(tables.map((t) => [objectKey(t), t]));
  const done = new Set<string>();
  const out: Table[] = [];
  const visit = (t: Table): void => {
    const key = objectKey(t);
    if (done.has(key)) return;
    done.add(key);
    const parent = t.partitionOf ? byKey.get(objectKey(t.partitionOf.parent)) : undefined;
    if (parent) visit(parent);
    out.push(t);
  };
  for (const t of tables) visit(t);
  return out;
}

/**
 * Everything in the model, in phase order. A foreign key to a table outside the
 * model is left out (its rows are not replicated, so the key could not hold) and
 * listed in `skipped`.
 */
export function generateSchema(model: SchemaModel): { readonly statements: Statement[]; readonly skipped: string[] } {
  const tableKeys = new Set(model.tables.map(objectKey));
  const outside = danglingForeignKeys(model.tables, tableKeys);
  const statements: Statement[] = [
    ...model.schemas.map(createSchema),
    ...model.collations.map(createCollation),
    ...orderTypes(model.types).flatMap(createType),
    ...model.sequences.flatMap(createSequence),
    ...orderTables(model.tables).flatMap((t) => createTable(t, model)),
  ];
  return { statements: inPhaseOrder(statements.filter((s) => !outside.objects.has(s.object))), skipped: outside.skipped };
}

/** Foreign keys whose referenced table is not among `tableKeys`: their statement objects, and why they are left out. */
export function danglingForeignKeys(tables: readonly Table[], tableKeys: ReadonlySet<string>): { readonly objects: Set<string>; readonly skipped: string[] } {
  const objects = new Set<string>();
  const skipped: string[] = [];
  for (const t of tables) {
    for (const c of t.constraints) {
      if (c.kind !== 'foreign key' || !c.references || tableKeys.has(objectKey(c.references))) continue;
      objects.add(`constraint ${quoteIdent(c.name)} on ${q(t)}`);
      skipped.push(`foreign key ${quoteIdent(c.name)} on ${q(t)} (references ${q(c.references)}, which is not replicated)`);
    }
  }
  return { objects, skipped };
}
