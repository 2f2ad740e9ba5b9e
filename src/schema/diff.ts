/**
 * Compares the source's schema model with the target's, object by object, by
 * name. Objects missing on the target become CREATE statements (what
 * `pgtide schema copy` runs). Objects on both sides that differ become
 * differences, each with the statements `--apply-diff` may run, or the reason
 * it refuses to.
 *
 * What --apply-diff applies is what cannot lose data or reject a row the
 * source can send: adding a missing column, constraint, index or enum value;
 * setting a column's or domain's default as on the source; dropping a NOT NULL
 * the source does not have; replica identity, sequence ownership and comments.
 * It refuses what rewrites, narrows or drops: a column type or collation, SET
 * NOT NULL, a changed constraint, index or type definition, identity and
 * generated columns, sequence options, and anything only the target has.
 */
import { qualify, quoteIdent, type QualifiedName } from '../core/sql.js';
import {
  addColumn, addConstraint, columnComment, commentOn, constraintComment, createCollation, createIndex, createSchema, createSequence,
  createTable, createType, danglingForeignKeys, indexComment, inPhaseOrder, literal, orderTables, ownedBy, replicaIdentity, setDefault, type Statement,
} from './ddl.js';
import { objectKey, orderTypes, type Column, type SchemaModel, type Sequence, type Table, type UserType } from './model.js';

export interface Difference {
  /** The object that differs, as `column "c" of "s"."t"`. */
  readonly object: string;
  /** What differs, source first. */
  readonly message: string;
  /** What --apply-diff runs; empty when it refuses. */
  readonly fix: readonly Statement[];
  /** Why --apply-diff leaves this alone; null when it applies `fix`. */
  readonly refused: string | null;
}

export interface SchemaPlan {
  /** Objects missing on the target, as `table "s"."t"`. */
  readonly missing: readonly string[];
  /** The statements that create them, in phase order. */
  readonly create: readonly Statement[];
  readonly differences: readonly Difference[];
  /** Left out on purpose (extension types, foreign keys to tables that are not replicated). */
  readonly skipped: readonly string[];
}

const q = (n: QualifiedName): string => qualify(n.schema, n.name);
const show = (v: string | null): string => (v === null ? 'none' : v);

const REWRITE = 'it would rewrite or narrow existing data; change it on the target by hand';
const ONLY_TARGET = 'pgtide never drops what only the target has; drop it by hand if it is not wanted';

export function planSchema(source: SchemaModel, target: SchemaModel): SchemaPlan {
  const missing: string[] = [];
  const create: Statement[] = [];
  const differences: Difference[] = [];
  const byKey = <T extends QualifiedName>(list: readonly T[]): Map<string, T> => new Map(list.map((o) => [objectKey(o), o]));

  for (const s of source.schemas) {
    if (!target.schemas.includes(s)) { missing.push(`schema ${quoteIdent(s)}`); create.push(createSchema(s)); }
  }

  const targetCollations = byKey(target.collations);
  for (const c of source.collations) {
    const other = targetCollations.get(objectKey(c));
    if (!other) { missing.push(`collation ${q(c)}`); create.push(createCollation(c)); continue; }
    const a = createCollation(c).sql;
    const b = createCollation(other).sql;
    if (a !== b) differences.push({ object: `collation ${q(c)}`, message: `defined as ${a.slice(a.indexOf('('))} on the source, ${b.slice(b.indexOf('('))} on the target`, fix: [], refused: REWRITE });
  }

  const targetTypes = byKey(target.types);
  for (const t of orderTypes(source.types)) {
    const other = targetTypes.get(objectKey(t));
    if (!other) { missing.push(`${t.kind === 'domain' ? 'domain' : 'type'} ${q(t)}`); create.push(...createType(t)); continue; }
    differences.push(...compareTypes(t, other));
  }

  const targetSequences = byKey(target.sequences);
  for (const s of source.sequences) {
    const other = targetSequences.get(objectKey(s));
    if (!other) { missing.push(`sequence ${q(s)}`); create.push(...createSequence(s)); continue; }
    differences.push(...compareSequences(s, other));
  }

  const tableKeys = new Set(source.tables.map(objectKey));
  const dangling = danglingForeignKeys(source.tables, tableKeys);
  const targetTables = byKey(target.tables);
  for (const t of orderTables(source.tables)) {
    const other = targetTables.get(objectKey(t));
    if (!other) {
      missing.push(`table ${q(t)}`);
      create.push(...createTable(t, source).filter((s) => !dangling.objects.has(s.object)));
      continue;
    }
    differences.push(...compareTables(t, other, dangling.objects));
  }
  // The target read the same names, their partitions and ancestors: a partition or parent only it has.
  for (const t of target.tables) {
    if (!tableKeys.has(objectKey(t))) {
      differences.push({ object: `table ${q(t)}`, message: `exists only on the target${t.partitionOf ? ` (a partition of ${q(t.partitionOf.parent)} ${t.partitionOf.bound})` : ''}`, fix: [], refused: ONLY_TARGET });
    }
  }
  return { missing, create: inPhaseOrder(create), differences, skipped: [...source.skipped, ...dangling.skipped] };
}

function compareTypes(s: UserType, t: UserType): Difference[] {
  const object = `${s.kind === 'domain' ? 'domain' : 'type'} ${q(s)}`;
  const out: Difference[] = [];
  if (s.kind !== t.kind) return [{ object, message: `a ${s.kind} on the source, a ${t.kind} on the target`, fix: [], refused: REWRITE }];
  if (s.kind === 'enum' && t.kind === 'enum') {
    const extra = t.labels.filter((l) => !s.labels.includes(l));
    const shared = s.labels.filter((l) => t.labels.includes(l));
    const inOrder = shared.every((l, i) => t.labels.filter((x) => s.labels.includes(x))[i] === l);
    const absent = s.labels.filter((l) => !t.labels.includes(l));
    if (extra.length > 0 || !inOrder) {
      out.push({ object, message: `labels (${s.labels.map(literal).join(', ')}) on the source, (${t.labels.map(literal).join(', ')}) on the target`, fix: [], refused: 'enum labels can only be added; the target has labels or an order the source does not' });
    } else if (absent.length > 0) {
      // Each missing label goes after the one before it on the source (which exists by then), or before the first.
      const fix = absent.map((label): Statement => {
        const at = s.labels.indexOf(label);
        const position = at > 0 ? ` AFTER ${literal(s.labels[at - 1]!)}` : shared[0] !== undefined ? ` BEFORE ${literal(shared[0])}` : '';
        return { phase: 'type', object, sql: `ALTER TYPE ${q(s)} ADD VALUE ${literal(label)}${position}` };
      });
      out.push({ object, message: `label${absent.length > 1 ? 's' : ''} ${absent.map(literal).join(', ')} missing on the target`, fix, refused: null });
    }
  } else if (s.kind === 'domain' && t.kind === 'domain') {
    if (s.baseType !== t.baseType) out.push({ object, message: `based on ${s.baseType} on the source, ${t.baseType} on the target`, fix: [], refused: REWRITE });
    if (s.notNull !== t.notNull) out.push({ object, message: `${s.notNull ? 'NOT NULL' : 'nullable'} on the source, ${t.notNull ? 'NOT NULL' : 'nullable'} on the target`, fix: [], refused: REWRITE });
    if (s.default !== t.default) {
      out.push({ object, message: `default ${show(s.default)} on the source, ${show(t.default)} on the target`, fix: [{ phase: 'type', object, sql: `ALTER DOMAIN ${q(s)} ${s.default === null ? 'DROP DEFAULT' : `SET DEFAULT ${s.default}`}` }], refused: null });
    }
    for (const c of s.checks) {
      const other = t.checks.find((x) => x.name === c.name);
      if (!other) out.push({ object, message: `constraint ${quoteIdent(c.name)} ${c.definition} missing on the target`, fix: [{ phase: 'type', object, sql: `ALTER DOMAIN ${q(s)} ADD CONSTRAINT ${quoteIdent(c.name)} ${c.definition}` }], refused: null });
      else if (other.definition !== c.definition) out.push({ object, message: `constraint ${quoteIdent(c.name)} is ${c.definition} on the source, ${other.definition} on the target`, fix: [], refused: REWRITE });
    }
    for (const c of t.checks) if (!s.checks.some((x) => x.name === c.name)) out.push({ object, message: `constraint ${quoteIdent(c.name)} exists only on the target`, fix: [], refused: ONLY_TARGET });
  } else {
    const a = createType(s)[0]?.sql ?? '';
    const b = createType({ ...t, schema: s.schema, name: s.name })[0]?.sql ?? '';
    if (a !== b) out.push({ object, message: `defined as ${a.slice(a.indexOf(' AS ') + 4)} on the source, ${b.slice(b.indexOf(' AS ') + 4)} on the target`, fix: [], refused: REWRITE });
  }
  if (s.comment !== t.comment) out.push(commentDifference(object, s.comment, t.comment, commentOn(`TYPE ${q(s)}`, object, s.comment)));
  return out;
}

function compareSequences(s: Sequence, t: Sequence): Difference[] {
  const object = `sequence ${q(s)}`;
  const out: Difference[] = [];
  const keys = ['dataType', 'increment', 'min', 'max', 'cycle'] as const;
  const changed = keys.filter((k) => s.options[k] !== t.options[k]);
  if (changed.length > 0) {
    out.push({ object, message: changed.map((k) => `${k} ${String(s.options[k])} on the source, ${String(t.options[k])} on the target`).join('; '), fix: [], refused: 'changing sequence options changes the values the target hands out; alter it by hand' });
  }
  const ownerText = (x: Sequence): string => (x.ownedBy ? `${q(x.ownedBy.table)}.${quoteIdent(x.ownedBy.column)}` : 'none');
  if (ownerText(s) !== ownerText(t)) {
    const fix = ownedBy(s);
    out.push({ object, message: `owned by ${ownerText(s)} on the source, ${ownerText(t)} on the target`, fix: fix ? [fix] : [], refused: fix ? null : ONLY_TARGET });
  }
  if (s.comment !== t.comment) out.push(commentDifference(object, s.comment, t.comment, commentOn(`SEQUENCE ${q(s)}`, object, s.comment)));
  return out;
}

function commentDifference(object: string, source: string | null, target: string | null, fix: Statement): Difference {
  return { object, message: `comment ${source === null ? 'none' : literal(source)} on the source, ${target === null ? 'none' : literal(target)} on the target`, fix: [fix], refused: null };
}

function describeColumn(c: Column): string {
  const parts = [c.type];
  if (c.collation) parts.push(`COLLATE ${q(c.collation)}`);
  if (c.identity) parts.push(`identity ${c.identity}`);
  if (c.generated) parts.push(`generated ${c.generated}`);
  return parts.join(' ');
}

function compareTables(s: Table, t: Table, dangling: ReadonlySet<string>): Difference[] {
  const object = `table ${q(s)}`;
  const out: Difference[] = [];
  if (s.partitioned !== t.partitioned || s.partitionKey !== t.partitionKey) {
    out.push({ object, message: `${s.partitioned ? `partitioned by ${show(s.partitionKey)}` : 'not partitioned'} on the source, ${t.partitioned ? `partitioned by ${show(t.partitionKey)}` : 'not partitioned'} on the target`, fix: [], refused: REWRITE });
  }
  const partition = (x: Table): string => (x.partitionOf ? `a partition of ${q(x.partitionOf.parent)} ${x.partitionOf.bound}` : 'not a partition');
  if (partition(s) !== partition(t)) out.push({ object, message: `${partition(s)} on the source, ${partition(t)} on the target`, fix: [], refused: 'attaching or detaching partitions moves rows; do it by hand' });

  for (const c of s.columns) {
    const col = `column ${quoteIdent(c.name)} of ${q(s)}`;
    const other = t.columns.find((x) => x.name === c.name);
    if (!other) {
      // A partition's columns are its parent's: the parent's difference covers it.
      if (!s.partitionOf) out.push({ object: col, message: `${describeColumn(c)} missing on the target`, fix: [addColumn(s, c), ...(c.comment !== null ? [columnComment(s, c)] : [])], refused: null });
      continue;
    }
    // Reported, and the column's other attributes still compared: every difference at once.
    if (describeColumn(c) !== describeColumn(other)) {
      out.push({ object: col, message: `${describeColumn(c)} on the source, ${describeColumn(other)} on the target`, fix: [], refused: REWRITE });
    }
    // A default next to a changed identity or generation is part of that (refused) difference.
    const sameKind = c.generated === other.generated && c.identity === other.identity;
    if (sameKind && c.default !== other.default) {
      if (c.generated !== null) out.push({ object: col, message: `generated as ${show(c.default)} on the source, ${show(other.default)} on the target`, fix: [], refused: REWRITE });
      else out.push({ object: col, message: `default ${show(c.default)} on the source, ${show(other.default)} on the target`, fix: [setDefault(s, c)], refused: null });
    }
    if (sameKind && c.notNull !== other.notNull) {
      out.push(c.notNull
        ? { object: col, message: 'NOT NULL on the source, nullable on the target', fix: [], refused: 'SET NOT NULL scans the table and fails on target rows that hold NULL; run it by hand' }
        : { object: col, message: 'nullable on the source, NOT NULL on the target', fix: [{ phase: 'column', object: col, sql: `ALTER TABLE ${q(s)} ALTER COLUMN ${quoteIdent(c.name)} DROP NOT NULL` }], refused: null });
    }
    // Both sides 18+ (a partition's inherited NOT NULL keeps its own name rule): a rename is safe.
    if (!s.partitionOf && c.notNullConstraint !== null && other.notNullConstraint !== null && c.notNullConstraint !== other.notNullConstraint) {
      out.push({
        object: col, message: `NOT NULL constraint ${quoteIdent(c.notNullConstraint)} on the source, ${quoteIdent(other.notNullConstraint)} on the target`,
        fix: [{ phase: 'constraint', object: col, sql: `ALTER TABLE ${q(s)} RENAME CONSTRAINT ${quoteIdent(other.notNullConstraint)} TO ${quoteIdent(c.notNullConstraint)}` }], refused: null,
      });
    }
    if (c.comment !== other.comment) out.push(commentDifference(col, c.comment, other.comment, columnComment(s, c)));
  }
  for (const c of t.columns) {
    if (!s.columns.some((x) => x.name === c.name)) out.push({ object: `column ${quoteIdent(c.name)} of ${q(s)}`, message: `${describeColumn(c)} exists only on the target`, fix: [], refused: ONLY_TARGET });
  }

  for (const c of s.constraints) {
    const label = `constraint ${quoteIdent(c.name)} on ${q(s)}`;
    if (dangling.has(label)) continue;
    const other = t.constraints.find((x) => x.name === c.name);
    if (!other) {
      out.push({ object: label, message: `${c.definition} missing on the target`, fix: [addConstraint(s, c), ...(c.comment !== null ? [constraintComment(s, c)] : [])], refused: null });
    } else if (other.definition !== c.definition) {
      out.push({ object: label, message: `${c.definition} on the source, ${other.definition} on the target`, fix: [], refused: 'changing a constraint means dropping it; re-create it by hand' });
    } else if (other.comment !== c.comment) {
      out.push(commentDifference(label, c.comment, other.comment, constraintComment(s, c)));
    }
  }
  for (const c of t.constraints) {
    if (!s.constraints.some((x) => x.name === c.name)) out.push({ object: `constraint ${quoteIdent(c.name)} on ${q(s)}`, message: `${c.definition} exists only on the target`, fix: [], refused: ONLY_TARGET });
  }

  for (const i of s.indexes) {
    const label = `index ${quoteIdent(i.name)} on ${q(s)}`;
    const other = t.indexes.find((x) => x.name === i.name);
    if (!other) {
      out.push({ object: label, message: 'missing on the target', fix: [createIndex(s, i), ...(i.comment !== null ? [indexComment(s, i)] : [])], refused: null });
    } else if (other.definition !== i.definition) {
      out.push({ object: label, message: `${i.definition} on the source, ${other.definition} on the target`, fix: [], refused: 'changing an index means dropping it; re-create it by hand' });
    } else if (other.comment !== i.comment) {
      out.push(commentDifference(label, i.comment, other.comment, indexComment(s, i)));
    }
  }
  for (const i of t.indexes) {
    if (!s.indexes.some((x) => x.name === i.name)) out.push({ object: `index ${quoteIdent(i.name)} on ${q(s)}`, message: `${i.definition} exists only on the target`, fix: [], refused: ONLY_TARGET });
  }

  const identity = (x: Table): string => (typeof x.replicaIdentity === 'object' ? `using index ${quoteIdent(x.replicaIdentity.index)}` : x.replicaIdentity);
  if (identity(s) !== identity(t)) {
    const fix = replicaIdentity(s) ?? { phase: 'replica identity' as const, object, sql: `ALTER TABLE ${q(s)} REPLICA IDENTITY DEFAULT` };
    out.push({ object, message: `replica identity ${identity(s)} on the source, ${identity(t)} on the target`, fix: [fix], refused: null });
  }
  if (s.comment !== t.comment) out.push(commentDifference(object, s.comment, t.comment, commentOn(`TABLE ${q(s)}`, object, s.comment)));
  return out;
}
