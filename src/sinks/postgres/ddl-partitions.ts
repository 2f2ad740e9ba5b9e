/**
 * Partitions in replicated DDL (docs/ddl.md): a table that became a
 * partition of a replicated partitioned table (CREATE TABLE … PARTITION OF,
 * ATTACH PARTITION), a partition detached from it, and partitions that a
 * command on their partitioned table changed too.
 *
 * Where the rows go decides what the target records. pgoutput publishes a
 * partition's rows under its own name, or under the ancestor the publication
 * lists with publish_via_partition_root; the capture says which
 * (`published_as`). A new partition published under its own name joins
 * `table_state` as ready from its transaction on; an attached table that
 * holds rows is copied again with its own sync LSN (the re-copy of
 * recopy.ts: `init` in this batch, the gate drops its rows until the copy's
 * snapshot). Published under the root, its rows cannot be told apart from
 * the root's, so the root is copied again instead. A detached table stays on
 * the target; when no publication lists it any more, pgtide forgets it.
 */
import { ZERO_LSN, formatLsn, type Lsn } from '../../core/lsn.js';
import { qualify, quoteIdent } from '../../core/sql.js';
import { tableKey, type TableGateState } from '../../core/table-sync.js';
import type { DdlEvent, TableSnapshot } from '../../apply/ddl-event.js';
import type { DdlQuery } from './apply-writer.js';
import { planCreate } from './ddl-plan.js';
import type { DdlStep } from './ddl-step.js';
import { ensureSchema } from './ddl-schemas.js';
import { markForRecopy } from './recopy.js';

type Bound = NonNullable<TableSnapshot['partition']>;
type PublishedAs = { readonly schema: string; readonly name: string } | null | undefined;

export type PartitionChange =
  /** Became a partition (created as one, or attached); `filled`: it held rows the target does not have. */
  | { readonly kind: 'joined'; readonly table: TableSnapshot; readonly bound: Bound; readonly wasKnown: boolean; readonly filled: boolean; readonly publishedAs: PublishedAs }
  | { readonly kind: 'detached'; readonly table: TableSnapshot; readonly bound: Bound; readonly publishedAs: PublishedAs }
  /** Changed by a command on an ancestor in the same message: the ancestor's statement does it on the target. */
  | { readonly kind: 'inherited' };

interface ChangeFacts {
  /** Added to the publication by the capture itself: a partition of a table outside the scope, made a table of its own. */
  readonly created?: boolean;
  readonly before: TableSnapshot | null;
  readonly after: TableSnapshot | null;
  readonly publishedAs?: PublishedAs;
  readonly filled?: boolean;
}

export function partitionChange(event: DdlEvent, change: ChangeFacts): PartitionChange | undefined {
  const { before, after } = change;
  if (!after || event.event !== 'ddl_command_end' || change.created === true) return undefined;
  const was = before?.partition;
  const now = after.partition;
  if (now && (!was || was.parent_oid !== now.parent_oid)) {
    return { kind: 'joined', table: after, bound: now, wasKnown: before !== null, filled: change.filled === true, publishedAs: change.publishedAs };
  }
  if (was && !now) return { kind: 'detached', table: after, bound: was, publishedAs: change.publishedAs };
  if (was && now) {
    // An ancestor changed in the same command (a recursing ALTER TABLE, CREATE INDEX on the root).
    const changed = new Map(event.tables.map((t) => [t.oid, t.after]));
    for (let parent: number | undefined = now.parent_oid, hops = 0; parent !== undefined && hops < 64; hops++) {
      const ancestor = changed.get(parent);
      if (ancestor === undefined) break;
      if (ancestor.relkind === 'p') return { kind: 'inherited' };
      parent = ancestor.partition?.parent_oid;
    }
  }
  return undefined;
}

const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/** The statements for a partition change, from what the target has now. */
export async function planPartition(query: DdlQuery, change: PartitionChange): Promise<DdlStep[]> {
  if (change.kind === 'inherited') return [];
  const name = qualify(change.table.schema, change.table.name);
  const parent = qualify(change.bound.parent_schema, change.bound.parent);
  const [row] = await query(`SELECT c.relispartition AS part FROM pg_class c WHERE c.oid = to_regclass($1)`, [name]);
  const [hasParent] = await query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [parent]);
  // A partition of a table the target does not have (its root outside the scope): a table of its own there.
  if (hasParent?.['ok'] !== true) return change.kind === 'joined' && !row ? planCreate(change.table) : [];
  if (change.kind === 'detached') {
    return row?.['part'] === true ? [{ sql: `ALTER TABLE ${parent} DETACH PARTITION ${name}`, destructive: false, what: `detach partition ${name} from ${parent}` }] : [];
  }
  if (row?.['part'] === true) return [];
  if (row) return [{ sql: `ALTER TABLE ${parent} ATTACH PARTITION ${name} ${change.bound.bound}`, destructive: false, what: `attach partition ${name} to ${parent}` }];
  const table = change.table;
  const steps: DdlStep[] = [ensureSchema(change.table.schema), {
    sql: `CREATE TABLE IF NOT EXISTS ${name} PARTITION OF ${parent} ${change.bound.bound}${table.partkey ? ` PARTITION BY ${table.partkey}` : ''}`,
    destructive: false, what: `create partition ${name} of ${parent}`,
  }];
  // Constraints and indexes the partition has of its own; those it inherits exist once it is created.
  for (const c of table.constraints) {
    steps.push({
      sql: `DO $pgtide$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = ${literal(name)}::regclass AND conname = ${literal(c.name)}) THEN ALTER TABLE ${name} ADD CONSTRAINT ${quoteIdent(c.name)} ${c.def}; END IF; END $pgtide$`,
      destructive: false, what: `add constraint ${c.name}`,
    });
  }
  for (const i of table.indexes) {
    if (i.constraint === null) steps.push({ sql: withoutOnly(i.def).replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX IF NOT EXISTS '), destructive: false, what: `create index ${i.name}` });
  }
  return steps;
}

/**
 * `pg_get_indexdef` of a partitioned table's index reads `ON ONLY`: made so
 * on the target it would stay invalid and its partitions without the index.
 * Without ONLY it is built on every partition too, as the source's CREATE
 * INDEX on the partitioned table did.
 */
export function withoutOnly(sql: string): string {
  return sql.replace(/^(CREATE (?:UNIQUE )?INDEX (?:CONCURRENTLY )?(?:IF NOT EXISTS )?\S+ ON )ONLY /, '$1');
}

export interface PartitionStateOptions {
  readonly subscription: string;
  readonly tables: Map<string, TableGateState>;
  readonly onRecopy?: (table: string, commitLsn: Lsn) => void;
}

/** After the change and its snapshot are recorded: table_state and the gate follow where the rows now go. */
export async function recordPartitionState(query: DdlQuery, options: PartitionStateOptions, change: PartitionChange, commitLsn: Lsn): Promise<string | undefined> {
  if (change.kind === 'inherited') return undefined;
  const sub = options.subscription;
  const self = { schema: change.table.schema, name: change.table.name };
  const as = change.publishedAs ?? null;
  const isSelf = as !== null && as.schema === self.schema && as.name === self.name;
  if (change.kind === 'detached') {
    if (as !== null) return undefined;
    await query(`DELETE FROM pgtide.table_state WHERE subscription = $1 AND schema_name = $2 AND table_name = $3`, [sub, self.schema, self.name]);
    await query(`DELETE FROM pgtide.ddl_snapshot WHERE subscription = $1 AND schema_name = $2 AND table_name = $3`, [sub, self.schema, self.name]);
    options.tables.delete(tableKey(self.schema, self.name));
    return `${qualify(self.schema, self.name)} left the publication with its detach: kept on the target, no longer replicated`;
  }
  if (as === null) return undefined;
  if (isSelf) {
    // Replicated under its own name already (it was a table in scope before it was attached): nothing to copy.
    if (options.tables.get(tableKey(self.schema, self.name))?.state === 'ready' && change.wasKnown) return undefined;
    if (change.filled) {
      await query(
        `INSERT INTO pgtide.table_state (subscription, schema_name, table_name, state, copy_owns_rows) VALUES ($1, $2, $3, 'init', true)
         ON CONFLICT (subscription, schema_name, table_name) DO UPDATE SET state = 'init', sync_lsn = NULL, rows_copied = 0, copy_owns_rows = true, updated_at = now()`,
        [sub, self.schema, self.name]);
      options.tables.set(tableKey(self.schema, self.name), { state: 'init', syncLsn: ZERO_LSN });
      options.onRecopy?.(qualify(self.schema, self.name), commitLsn);
      return `${qualify(self.schema, self.name)} was attached with rows: copied with its own snapshot`;
    }
    // Its rows are published from this transaction on.
    const syncLsn = (commitLsn - 1n) as Lsn;
    await query(
      `INSERT INTO pgtide.table_state (subscription, schema_name, table_name, state, sync_lsn) VALUES ($1, $2, $3, 'ready', $4::text::pg_lsn)
       ON CONFLICT (subscription, schema_name, table_name) DO UPDATE SET state = 'ready', sync_lsn = EXCLUDED.sync_lsn, updated_at = now()`,
      [sub, self.schema, self.name, formatLsn(syncLsn)]);
    options.tables.set(tableKey(self.schema, self.name), { state: 'ready', syncLsn });
    return undefined;
  }
  // Published under an ancestor (publish_via_partition_root): its rows cannot be copied apart from the ancestor's.
  if (!change.filled || !options.tables.has(tableKey(as.schema, as.name))) return undefined;
  await markForRecopy(query, sub, as.schema, as.name);
  options.tables.set(tableKey(as.schema, as.name), { state: 'init', syncLsn: ZERO_LSN });
  options.onRecopy?.(qualify(as.schema, as.name), commitLsn);
  return `${qualify(self.schema, self.name)} was attached with rows to ${qualify(as.schema, as.name)}, which is published with publish_via_partition_root: ${qualify(as.schema, as.name)} is copied again`;
}
