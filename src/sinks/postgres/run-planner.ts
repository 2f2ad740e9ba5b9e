/**
 * The run planner: turns the open batch's row changes, table by table, into
 * runs, each run becoming one set-based statement (run-statements.ts chooses
 * which). The apply writer (apply-writer.ts) decides when a queue is sent
 * and keeps the batches, commits, the origin, pipelining and failure
 * bookkeeping; the planner sends nothing and knows no connection, so its
 * rules can be tested without a server (test/unit/run-planner.test.ts).
 *
 * Order: within a table, changes stay in source order exactly: a change
 * joins the last run only when the run's statement applies it as if it came
 * after the run's other rows. Across tables, a batch may reorder (the writer
 * applies under session_replication_role = replica and commits atomically),
 * except around tables with replica triggers (replica-triggers.ts): there
 * `switchTo` tells the writer to send everything queued first.
 *
 * Folding (net-effect.ts): a table's changes fold per key when the writer
 * says the source transaction may fold and the table allows it (a key, no
 * replica triggers, no fold conflict met before, an `error` policy without
 * tombstones, no per-index unique checks). A change the fold cannot express
 * puts what is folded so far into runs first, then joins the runs in order.
 */
import type { RowChange, TransactionInfo } from '../../changes/change.js';
import type { Relation } from '../../changes/relation-cache.js';
import { PgtideError } from '../../core/errors.js';
import type { Tuple } from '../../protocol/messages.js';
import type { TargetTable } from './table-catalog.js';
import { deleteFullStatement, hasSettableKey, textOf, updateFullStatement, type KeyedUpdate } from './statements.js';
import { NetEffectTable, type CountedStatement, type FoldStatements } from './net-effect.js';
import { withUnchangedKeyFromOld } from './row-image.js';
import { hasReplicaTriggers } from './replica-triggers.js';
import { extendSpan, type SourceSpan } from './apply-failure.js';
import type { FullChange } from './conflict-statements.js';
import { deltaLockStatement, deltaUpdateStatement, refuseDeltaWithoutOldRow, type DeltaColumns } from './delta-statements.js';

/** A row change the planner queues (messages and TRUNCATE are the writer's). */
export type KeyedChange = Exclude<RowChange, { kind: 'message' | 'truncate' }>;

// `sources`: each row's source transaction, for the conflict log (empty for folded rows).
export type Run =
  | { readonly kind: 'insert'; readonly table: TargetTable; readonly rows: Tuple[]; readonly sources: TransactionInfo[] }
  | { readonly kind: 'update'; readonly table: TargetTable; readonly setColumns: readonly number[]; readonly maskKey: string; readonly rows: KeyedUpdate[]; readonly keys: Set<string>; readonly sources: TransactionInfo[] }
  | { readonly kind: 'delete'; readonly table: TargetTable; readonly keys: (readonly string[])[]; readonly sources: TransactionInfo[] }
  | { readonly kind: 'counted'; readonly table: TargetTable; readonly counted: CountedStatement; readonly full?: FullChange };

/** What a queue hands over when the writer sends it: its runs, and the source transactions they carry. */
export interface PlannedRuns {
  readonly runs: readonly Run[];
  readonly span: SourceSpan | undefined;
}

/** Which tables may fold, from the writer's conflict hooks (conflict-apply.ts, unique-conflicts.ts). */
export interface RunPlannerOptions {
  /** Columns updated by difference; a FULL table's UPDATE then gets delta-statements.ts's statement. */
  readonly deltaColumns?: DeltaColumns | undefined;
  /** Tables that met a fold conflict once (ApplyWriterOptions.noFoldTables). */
  readonly noFoldTables?: ReadonlySet<string> | undefined;
  /** The table's conflict policy allows folding; and how its folded deletes and updates are written. */
  readonly conflicts: { foldable(table: TargetTable): boolean; foldStatements(table: TargetTable): FoldStatements };
  /** The table is in per-index unique check mode: its runs keep each row's source transaction. */
  readonly uniqueChecks: (table: TargetTable) => boolean;
}

/** A key is unique per table; \u0001 cannot appear in a text value sent by PostgreSQL. */
const keyString = (key: readonly string[]): string => (key.length === 1 ? key[0]! : key.join('\u0001'));

/** One table's changes of the open batch, at one definition of the table. */
export class TableQueue {
  readonly table: TargetTable;
  readonly #fold: NetEffectTable | undefined;
  readonly #deltaColumns: DeltaColumns | undefined;
  #runs: Run[] = [];
  #span: SourceSpan | undefined;

  constructor(table: TargetTable, fold: NetEffectTable | undefined, deltaColumns: DeltaColumns | undefined) {
    this.table = table;
    this.#fold = fold;
    this.#deltaColumns = deltaColumns;
  }

  /**
   * Queues one change of source transaction `tx`; `fold`: that transaction
   * may fold (net-effect mode, outside an exact-replay stretch). True when
   * the change was folded: the batch must then be replayed in exact order on
   * a unique violation (FoldConflictError).
   */
  add(keyed: KeyedChange, tx: TransactionInfo | undefined, fold: boolean): boolean {
    const change = keyed.kind === 'update' ? withUnchangedKeyFromOld(keyed) : keyed;
    const exact = hasReplicaTriggers(this.table);
    this.#span = extendSpan(this.#span, tx);
    const { table } = this;
    const relation = table.relation;
    if (this.#fold) {
      if (fold && this.#fold.add(change)) return true;
      // Not foldable here: what is folded so far runs first, then this change in order.
      if (this.#fold.size > 0) this.#drainFold();
    }
    const last = this.#runs[this.#runs.length - 1];
    switch (change.kind) {
      case 'insert': {
        if (last?.kind === 'insert') {
          last.rows.push(change.newTuple);
          last.sources.push(tx!);
        } else this.#runs.push({ kind: 'insert', table, rows: [change.newTuple], sources: [tx!] });
        return false;
      }
      case 'update': {
        refuseDeltaWithoutOldRow(relation, this.#deltaColumns);
        if (relation.replicaIdentity === 'full' || relation.keyIndexes.length === 0) {
          requireIdentity(relation, 'UPDATE', change.oldTuple);
          const old = change.oldTuple ?? change.newTuple;
          const statement = deltaUpdateStatement(table, old, change.newTuple, this.#deltaColumns) ?? updateFullStatement(table, old, change.newTuple);
          const lock = deltaLockStatement(table, old, this.#deltaColumns);
          if (lock) this.#runs.push({ kind: 'counted', table, counted: { statement: lock, expectedRows: 1, operation: 'UPDATE' } });
          this.#runs.push({ kind: 'counted', table, counted: { statement, expectedRows: 1, operation: 'UPDATE' },
            full: { oldTuple: change.oldTuple ?? change.newTuple, newTuple: change.newTuple, source: tx! } });
          return false;
        }
        const key = relation.keyIndexes.map((i) => textOf((change.oldTuple ?? change.newTuple)[i], table, i) ?? '');
        const newKey = change.oldTuple ? relation.keyIndexes.map((i) => textOf(change.newTuple[i], table, i) ?? '') : key;
        const keyChanged = keyString(newKey) !== keyString(key);
        // Unchanged-TOAST columns stay out of SET (the target keeps its value); so do key
        // columns when the key did not change, which also keeps GENERATED ALWAYS identity
        // keys updatable (they may only be SET to DEFAULT).
        const setColumns: number[] = [];
        change.newTuple.forEach((value, index) => {
          if (value.kind !== 'unchanged' && (keyChanged || !relation.keyIndexes.includes(index))) setColumns.push(index);
        });
        if (setColumns.length === 0 && !hasSettableKey(table)) return false;
        const maskKey = setColumns.join(',');
        const k = keyString(key);
        // A joined UPDATE applies one match per target row, so a key may appear once per run;
        // a changed key could be matched by a later row of the same run, so it runs alone.
        if (!keyChanged && !exact && last?.kind === 'update' && last.maskKey === maskKey && !last.keys.has(k)) {
          last.rows.push({ key, newTuple: change.newTuple });
          last.keys.add(k);
          last.sources.push(tx!);
        } else {
          this.#runs.push({ kind: 'update', table, setColumns, maskKey: keyChanged ? `${maskKey}!` : maskKey, rows: [{ key, newTuple: change.newTuple }], keys: new Set([k]), sources: [tx!] });
        }
        return false;
      }
      case 'delete': {
        if (relation.replicaIdentity === 'full' || relation.keyIndexes.length === 0) {
          requireIdentity(relation, 'DELETE', change.oldTuple);
          this.#runs.push({ kind: 'counted', table, counted: { statement: deleteFullStatement(table, change.oldTuple), expectedRows: 1, operation: 'DELETE' },
            full: { oldTuple: change.oldTuple, newTuple: undefined, source: tx! } });
          return false;
        }
        const key = relation.keyIndexes.map((i) => textOf(change.oldTuple[i], table, i) ?? '');
        if (last?.kind === 'delete' && !exact) {
          last.keys.push(key);
          last.sources.push(tx!);
        } else this.#runs.push({ kind: 'delete', table, keys: [key], sources: [tx!] });
        return false;
      }
    }
  }

  /** Everything queued, the fold last (it holds the latest changes); the queue is then empty. */
  take(): PlannedRuns {
    if (this.#fold && this.#fold.size > 0) this.#drainFold();
    const planned: PlannedRuns = { runs: this.#runs, span: this.#span };
    this.#runs = [];
    this.#span = undefined;
    return planned;
  }

  #drainFold(): void {
    for (const step of this.#fold!.drain()) {
      this.#runs.push(step.operation === 'INSERT'
        ? { kind: 'insert', table: this.table, rows: [...step.rows], sources: [] }
        : { kind: 'counted', table: this.table, counted: step });
    }
  }
}

/** The open batch's queues, one per table, in the order the writer sends them. */
export class RunPlanner {
  readonly #options: RunPlannerOptions;
  readonly #queues = new Map<number, TableQueue>();
  /** The queue of the last change queued: a switch into or out of a replica-trigger table is a barrier. */
  #last: TableQueue | undefined;

  constructor(options: RunPlannerOptions) {
    this.#options = options;
  }

  /** The relation's queue at its current definition; undefined: resolve the table and `open` one. */
  current(relation: Relation): TableQueue | undefined {
    const queue = this.#queues.get(relation.oid);
    return queue && queue.table.relation.version === relation.version ? queue : undefined;
  }

  /** The queue of an earlier definition of the relation: a new definition (DDL) is a barrier for it. */
  superseded(relation: Relation): TableQueue | undefined {
    return this.#queues.get(relation.oid);
  }

  /** A new queue for a resolved table, last in the sending order. */
  open(table: TargetTable): TableQueue {
    const options = this.#options;
    const foldable = table.relation.replicaIdentity !== 'full' && table.relation.keyIndexes.length > 0 && !hasReplicaTriggers(table)
      && !(options.noFoldTables?.has(table.relation.qualifiedName) ?? false) && options.conflicts.foldable(table) && !options.uniqueChecks(table);
    const queue = new TableQueue(table, foldable ? new NetEffectTable(table, options.conflicts.foldStatements(table)) : undefined, options.deltaColumns);
    const oid = table.relation.oid;
    this.#queues.delete(oid);
    this.#queues.set(oid, queue);
    return queue;
  }

  /**
   * Notes that the next change goes to `queue`. True when it moves into or out
   * of a table with replica triggers: the writer sends every queue first
   * (replica-triggers.ts).
   */
  switchTo(queue: TableQueue): boolean {
    const previous = this.#last;
    this.#last = queue;
    return previous !== queue && (hasReplicaTriggers(queue.table) || (previous !== undefined && hasReplicaTriggers(previous.table)));
  }

  queues(): IterableIterator<TableQueue> {
    return this.#queues.values();
  }

  /** Forgets everything queued (rollback, or table definitions read again after DDL). */
  clear(): void {
    this.#queues.clear();
    this.#last = undefined;
  }
}

function requireIdentity(relation: Relation, what: string, oldTuple: Tuple | undefined): void {
  if (relation.replicaIdentity === 'full' && oldTuple) return;
  throw new PgtideError('UNSUPPORTED_OBJECT', `${what} on ${relation.qualifiedName} arrived without a replica identity (REPLICA IDENTITY ${relation.replicaIdentity.toUpperCase()} and no key). Give the source table a primary key, or ALTER TABLE ${relation.qualifiedName} REPLICA IDENTITY FULL.`);
}
