/**
 * Plans the target statements for one table's schema change by diffing two
 * catalog snapshots of the source table (ddl-event.ts). Columns are matched by
 * attnum and indexes by OID first, so a rename is a rename, never a drop plus
 * an add (which would lose the column's data on the target).
 *
 * Each step says whether it is destructive (drops data or narrows a type), so
 * the `ddl.destructive` policy can skip or pause exactly those.
 */
import { qualify, quoteIdent } from '../../core/sql.js';
import type { ColumnSnapshot, IndexSnapshot, TableSnapshot } from '../../apply/ddl-event.js';
import type { DdlStep } from './ddl-step.js';
import { createSequences, ownSequences } from './ddl-sequences.js';
import { seededColumn } from './ddl-missing-value.js';
import { planComments } from './ddl-comments.js';
import { ensureSchema } from './ddl-schemas.js';


/** CREATE TABLE for a table new to the target: columns, defaults, identity, generated; then its constraints and indexes. */
export function planCreate(table: TableSnapshot): DdlStep[] {
  const name = qualify(table.schema, table.name);
  const columns = table.columns.map((c) => columnDefinition(c));
  const steps: DdlStep[] = [
    ensureSchema(table.schema),
    ...createSequences(null, table),
    { sql: `CREATE TABLE IF NOT EXISTS ${name} (${columns.join(', ')})${table.partkey ? ` PARTITION BY ${table.partkey}` : ''}`, destructive: false, what: `create table ${name}` },
    ...ownSequences(null, table),
  ];
  for (const c of table.constraints) steps.push({ sql: `ALTER TABLE ${name} ADD CONSTRAINT ${quoteIdent(c.name)} ${c.def}`, destructive: false, what: `add constraint ${c.name}` });
  for (const i of table.indexes) if (i.constraint === null) steps.push({ sql: i.def, destructive: false, what: `create index ${i.name}` });
  const identity = replicaIdentity(table);
  if (identity) steps.push({ sql: `ALTER TABLE ${name} ${identity}`, destructive: false, what: 'set replica identity' });
  steps.push(...planComments(null, table));
  return steps;
}

/**
 * The enum values the source has and the target lacks, each placed before the
 * next source label the target has (or after the previous one), so the sort
 * order matches. Values are only added: renamed or reordered ones are not
 * replicated.
 */
export function planEnum(type: { readonly schema: string; readonly name: string; readonly labels: readonly string[] }, targetLabels: readonly string[]): DdlStep[] {
  const name = qualify(type.schema, type.name);
  const present = new Set(targetLabels);
  const steps: DdlStep[] = [];
  type.labels.forEach((label, i) => {
    if (present.has(label)) return;
    const next = type.labels.slice(i + 1).find((l) => present.has(l));
    const previous = type.labels.slice(0, i).reverse().find((l) => present.has(l));
    const place = next !== undefined ? ` BEFORE ${quoteLiteral(next)}` : previous !== undefined ? ` AFTER ${quoteLiteral(previous)}` : '';
    steps.push({ sql: `ALTER TYPE ${name} ADD VALUE IF NOT EXISTS ${quoteLiteral(label)}${place}`, destructive: false, what: `add value ${label} to ${name}` });
    present.add(label);
  });
  return steps;
}

const quoteLiteral = (text: string): string => `'${text.replace(/'/g, "''")}'`;

export function planDrop(table: { readonly schema: string; readonly name: string }): DdlStep[] {
  const name = qualify(table.schema, table.name);
  return [{ sql: `DROP TABLE IF EXISTS ${name}`, destructive: true, what: `drop table ${name}` }];
}

/** The statements that turn the target's `before` table into `after`. */
export function planAlter(before: TableSnapshot, after: TableSnapshot, options: { readonly concurrently?: boolean } = {}): DdlStep[] {
  // Sequences first: a default added below may name one.
  const steps: DdlStep[] = createSequences(before, after);
  let name = qualify(before.schema, before.name);
  if (before.schema !== after.schema) {
    steps.push(ensureSchema(after.schema));
    steps.push({ sql: `ALTER TABLE ${name} SET SCHEMA ${quoteIdent(after.schema)}`, destructive: false, what: `move ${name} to schema ${after.schema}` });
    name = qualify(after.schema, before.name);
  }
  if (before.name !== after.name) {
    steps.push({ sql: `ALTER TABLE ${name} RENAME TO ${quoteIdent(after.name)}`, destructive: false, what: `rename ${name} to ${after.name}` });
  }
  name = qualify(after.schema, after.name);
  const alter = (action: string, what: string, destructive = false): void => { steps.push({ sql: `ALTER TABLE ${name} ${action}`, destructive, what }); };

  const oldCols = new Map(before.columns.map((c) => [c.attnum, c]));
  const newCols = new Map(after.columns.map((c) => [c.attnum, c]));
  // Indexes and constraints go first when they disappear: a dropped column may be part of one.
  const oldIndexes = before.indexes.filter((i) => i.constraint === null);
  const newIndexes = after.indexes.filter((i) => i.constraint === null);
  const oldCons = new Map(before.constraints.map((c) => [c.name, c]));
  const newCons = new Map(after.constraints.map((c) => [c.name, c]));
  for (const [conName, c] of oldCons) {
    const next = newCons.get(conName);
    if (!next || next.def !== c.def) alter(`DROP CONSTRAINT IF EXISTS ${quoteIdent(conName)}`, `drop constraint ${conName}`);
  }
  const indexPlan = planIndexes(oldIndexes, newIndexes, after.schema, options.concurrently ?? false);
  steps.push(...indexPlan.drops);

  for (const [attnum, c] of oldCols) {
    if (!newCols.has(attnum)) alter(`DROP COLUMN IF EXISTS ${quoteIdent(c.name)}`, `drop column ${c.name}`, true);
  }
  // Renames: through a temporary name when a new name is still taken by another column (a swap).
  const renames = [...newCols].flatMap(([attnum, c]) => {
    const old = oldCols.get(attnum);
    return old && old.name !== c.name ? [{ from: old.name, to: c.name, attnum }] : [];
  });
  const taken = new Set([...oldCols.values()].filter((c) => newCols.has(c.attnum)).map((c) => c.name));
  const swap = renames.some((r) => taken.has(r.to));
  if (swap) {
    for (const r of renames) alter(`RENAME COLUMN ${quoteIdent(r.from)} TO ${quoteIdent(`pgtide_rename_${r.attnum}`)}`, `rename column ${r.from}`);
    for (const r of renames) alter(`RENAME COLUMN ${quoteIdent(`pgtide_rename_${r.attnum}`)} TO ${quoteIdent(r.to)}`, `rename column ${r.from} to ${r.to}`);
  } else {
    for (const r of renames) alter(`RENAME COLUMN ${quoteIdent(r.from)} TO ${quoteIdent(r.to)}`, `rename column ${r.from} to ${r.to}`);
  }

  for (const [attnum, c] of newCols) {
    const old = oldCols.get(attnum);
    const col = quoteIdent(c.name);
    if (!old) {
      // The rows the source had hold the value it computed then: the same on the target, then the expression.
      const seeded = seededColumn(c);
      alter(`ADD COLUMN IF NOT EXISTS ${columnDefinition(seeded ?? c)}`, `add column ${c.name}`);
      if (seeded) alter(`ALTER COLUMN ${col} SET DEFAULT ${c.default}`, `set default of ${c.name} (existing rows hold the source's value)`);
      continue;
    }
    if (old.generated !== c.generated) {
      if (c.generated === null) alter(`ALTER COLUMN ${col} DROP EXPRESSION IF EXISTS`, `drop expression of ${c.name}`);
      else {
        // A generation expression cannot be added to an existing column before PostgreSQL 17: re-create it.
        alter(`DROP COLUMN IF EXISTS ${col}`, `re-create generated column ${c.name}`);
        alter(`ADD COLUMN ${columnDefinition(c)}`, `re-create generated column ${c.name}`);
        continue;
      }
    }
    if (old.type !== c.type) {
      // The default may not cast to the new type: drop it first, set it again below.
      if (old.default !== null) alter(`ALTER COLUMN ${col} DROP DEFAULT`, `drop default of ${c.name} for its type change`);
      alter(`ALTER COLUMN ${col} TYPE ${c.type} USING ${col}::${c.type}`, `change type of ${c.name} from ${old.type} to ${c.type}`, !isWidening(old.type, c.type));
      if (c.default !== null && c.generated === null) alter(`ALTER COLUMN ${col} SET DEFAULT ${c.default}`, `set default of ${c.name}`);
    } else if (old.default !== c.default && c.generated === null && old.generated === null) {
      if (c.default === null) alter(`ALTER COLUMN ${col} DROP DEFAULT`, `drop default of ${c.name}`);
      else alter(`ALTER COLUMN ${col} SET DEFAULT ${c.default}`, `set default of ${c.name}`);
    }
    if (old.identity !== c.identity) {
      if (c.identity === '') alter(`ALTER COLUMN ${col} DROP IDENTITY IF EXISTS`, `drop identity of ${c.name}`);
      else if (old.identity === '') alter(`ALTER COLUMN ${col} ADD GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY`, `add identity to ${c.name}`);
      else alter(`ALTER COLUMN ${col} SET GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'}`, `change identity of ${c.name}`);
    }
    if (old.notnull !== c.notnull) {
      alter(`ALTER COLUMN ${col} ${c.notnull ? 'SET' : 'DROP'} NOT NULL`, `${c.notnull ? 'set' : 'drop'} not null on ${c.name}`);
    }
  }

  steps.push(...ownSequences(before, after));
  steps.push(...indexPlan.renames, ...indexPlan.creates);
  for (const [conName, c] of newCons) {
    const old = oldCons.get(conName);
    if (!old || old.def !== c.def) alter(`ADD CONSTRAINT ${quoteIdent(conName)} ${c.def}`, `add constraint ${conName}`);
  }
  const identity = replicaIdentity(after);
  if (identity && identity !== replicaIdentity(before)) alter(identity, 'change replica identity');
  steps.push(...planComments(before, after));
  return steps;
}

function columnDefinition(c: ColumnSnapshot): string {
  let text = `${quoteIdent(c.name)} ${c.type}`;
  if (c.generated !== null) return `${text} GENERATED ALWAYS AS (${c.generated}) STORED`;
  if (c.identity === 'a' || c.identity === 'd') text += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY`;
  else if (c.default !== null) text += ` DEFAULT ${c.default}`;
  if (c.notnull) text += ' NOT NULL';
  return text;
}

/** Indexes by OID (a rename keeps it), then by name with the same definition (a type change rebuilds indexes under new OIDs). */
function planIndexes(before: readonly IndexSnapshot[], after: readonly IndexSnapshot[], schema: string, concurrently: boolean): { drops: DdlStep[]; renames: DdlStep[]; creates: DdlStep[] } {
  const drops: DdlStep[] = [];
  const renames: DdlStep[] = [];
  const creates: DdlStep[] = [];
  const matched = new Set<IndexSnapshot>();
  const sameShape = (a: IndexSnapshot, b: IndexSnapshot): boolean => shape(a) === shape(b);
  for (const next of after) {
    const byOid = before.find((i) => i.oid === next.oid && !matched.has(i));
    const old = byOid ?? before.find((i) => i.name === next.name && !matched.has(i));
    if (old && sameShape(old, next)) {
      matched.add(old);
      if (old.name !== next.name) renames.push({ sql: `ALTER INDEX ${qualify(schema, old.name)} RENAME TO ${quoteIdent(next.name)}`, destructive: false, what: `rename index ${old.name} to ${next.name}` });
      continue;
    }
    creates.push(concurrently
      ? { sql: next.def.replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX CONCURRENTLY IF NOT EXISTS '), destructive: false, what: `create index ${next.name} concurrently`, concurrentIndex: { name: next.name, qualifiedName: qualify(schema, next.name) } }
      : { sql: next.def, destructive: false, what: `create index ${next.name}` });
  }
  for (const old of before) {
    if (!matched.has(old)) drops.push({ sql: `DROP INDEX IF EXISTS ${qualify(schema, old.name)}`, destructive: false, what: `drop index ${old.name}` });
  }
  return { drops, renames, creates };
}

/** An index definition without its own name and its table's name, which a rename changes. */
function shape(index: IndexSnapshot): string {
  return index.def.replace(/^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+/, 'CREATE $1INDEX ON $2');
}

function replicaIdentity(table: TableSnapshot): string | undefined {
  switch (table.replident) {
    case 'f': return 'REPLICA IDENTITY FULL';
    case 'n': return 'REPLICA IDENTITY NOTHING';
    case 'i': {
      const index = table.indexes.find((i) => i.replident);
      return index ? `REPLICA IDENTITY USING INDEX ${quoteIdent(index.name)}` : undefined;
    }
    default: return 'REPLICA IDENTITY DEFAULT';
  }
}

const INTEGER_RANK: Readonly<Record<string, number>> = { smallint: 1, integer: 2, bigint: 3, numeric: 4 };

/**
 * True for type changes that keep every value (so `ddl.destructive` does not
 * apply to them): integers to wider integers or numeric, real to double,
 * varchar(n) to a longer varchar or text, numeric(p,s) to a larger precision
 * with the same scale or to plain numeric, timestamp to timestamptz.
 * Anything else counts as narrowing.
 */
export function isWidening(from: string, to: string): boolean {
  if (from === to) return true;
  const a = INTEGER_RANK[from];
  const b = INTEGER_RANK[to];
  if (a !== undefined && b !== undefined) return b > a;
  if (from === 'real' && to === 'double precision') return true;
  if (to === 'text' && /^(character varying|character)(\(\d+\))?$/.test(from)) return true;
  const varchar = /^character varying(?:\((\d+)\))?$/;
  const fv = varchar.exec(from);
  const tv = varchar.exec(to);
  if (fv && tv) return tv[1] === undefined || (fv[1] !== undefined && Number(tv[1]) >= Number(fv[1]));
  const numeric = /^numeric(?:\((\d+),(\d+)\))?$/;
  const fn = numeric.exec(from);
  const tn = numeric.exec(to);
  if (fn && tn) return tn[1] === undefined || (fn[1] !== undefined && fn[2] === tn[2] && Number(tn[1]) >= Number(fn[1]));
  if (from === 'timestamp without time zone' && to === 'timestamp with time zone') return true;
  return false;
}
