/**
 * Net-effect folding of one table's changes inside a batch.
 *
 * Every change to the same key is folded into its final effect: insert then
 * update is one insert, insert then delete is nothing, many updates are one.
 * What remains is applied in three set-based phases per table — deletes, then
 * inserts, then updates — each key at most once per phase. Changes to
 * different keys commute, so this is exact *unless* another unique (or
 * exclusion) constraint ties rows together, e.g. a row that frees a unique
 * email and another that takes it. Such a batch fails with a unique
 * violation; the writer then replays it in exact order (see apply-writer.ts).
 *
 * A change the fold cannot express (an UPDATE that changes the key, a second
 * INSERT of a live key, a change to a key already deleted) makes `add` return
 * false: the caller emits the folded state and applies that change in order.
 */
import type { Tuple, TupleValue } from '../../protocol/messages.js';
import type { RowChange } from '../../changes/change.js';
import type { TargetTable } from './table-catalog.js';
import { textOf, deleteByKeyStatement, keyedUpdateStatements, hasSettableKey, type Statement } from './statements.js';

type KeyedChange = Extract<RowChange, { kind: 'insert' | 'update' | 'delete' }>;

interface KeyState {
  readonly key: readonly string[];
  /** The row existed before the batch and was deleted (possibly re-inserted after). */
  deleteFirst: boolean;
  op: 'insert' | 'update' | 'delete' | 'none';
  tuple: Tuple | undefined;
}

/** Later values win; an unchanged-TOAST marker keeps the earlier value, if there is one. */
function overlay(earlier: Tuple, later: Tuple): Tuple {
  let out: TupleValue[] | undefined;
  for (let i = 0; i < later.length; i++) {
    if (later[i]!.kind === 'unchanged' && earlier[i] && earlier[i]!.kind !== 'unchanged') {
      out ??= [...later];
      out[i] = earlier[i]!;
    }
  }
  return out ?? later;
}

export interface CountedStatement {
  readonly statement: Statement;
  /** Rows the statement must touch; fewer means rows were missing on the target. */
  readonly expectedRows: number;
  readonly operation: 'UPDATE' | 'DELETE';
}

/**
 * Rows to insert, left as rows: the writer chooses the statement (COPY for
 * long runs, INSERT … unnest otherwise), so no text is built twice.
 */
export interface InsertRows {
  readonly operation: 'INSERT';
  readonly rows: readonly Tuple[];
}

export type FoldStep = InsertRows | CountedStatement;

/** How a folded table's deletes and updates are written: plainly, or checked for conflicts (conflict-apply.ts). */
export interface FoldStatements {
  deleteByKey(table: TargetTable, keys: readonly (readonly string[])[]): CountedStatement;
  keyedUpdates(table: TargetTable, setColumns: readonly number[], rows: readonly { readonly key: readonly string[]; readonly newTuple: Tuple }[]): readonly CountedStatement[];
}

export const PLAIN_FOLD_STATEMENTS: FoldStatements = {
  deleteByKey: (table, keys) => ({ statement: deleteByKeyStatement(table, keys), expectedRows: keys.length, operation: 'DELETE' }),
  keyedUpdates: (table, setColumns, rows) => keyedUpdateStatements(table, setColumns, rows),
};

export class NetEffectTable {
  readonly table: TargetTable;
  readonly #keys = new Map<string, KeyState>();
  readonly #statements: FoldStatements;

  constructor(table: TargetTable, statements: FoldStatements = PLAIN_FOLD_STATEMENTS) {
    this.table = table;
    this.#statements = statements;
  }

  get size(): number { return this.#keys.size; }

  keyOf(change: KeyedChange): readonly string[] {
    const tuple = change.kind === 'insert' ? change.newTuple : change.kind === 'delete' ? change.oldTuple : (change.oldTuple ?? change.newTuple);
    return this.table.relation.keyIndexes.map((i) => textOf(tuple[i], this.table, i) ?? '');
  }

  /** Folds the change in; false when it cannot be folded (the caller applies it in order). */
  add(change: KeyedChange): boolean {
    const key = this.keyOf(change);
    const k = key.length === 1 ? key[0]! : key.join('\u0001');
    if (change.kind === 'update' && change.oldTuple) {
      const newKey = this.table.relation.keyIndexes.map((i) => textOf(change.newTuple[i], this.table, i) ?? '');
      if (newKey.join('\u0001') !== key.join('\u0001')) return false;
    }
    const state = this.#keys.get(k);
    if (!state) {
      this.#keys.set(k, {
        key, deleteFirst: false,
        op: change.kind,
        tuple: change.kind === 'delete' ? undefined : change.newTuple,
      });
      return true;
    }
    switch (change.kind) {
      case 'insert':
        if (state.op === 'delete' || state.op === 'none') {
          state.deleteFirst ||= state.op === 'delete';
          state.op = 'insert';
          state.tuple = change.newTuple;
          return true;
        }
        return false;
      case 'update':
        if (state.op === 'insert' || state.op === 'update') {
          state.tuple = overlay(state.tuple!, change.newTuple);
          return true;
        }
        return false;
      case 'delete':
        if (state.op === 'insert') {
          state.op = 'none';
          state.tuple = undefined;
          return true;
        }
        if (state.op === 'update') {
          state.op = 'delete';
          state.tuple = undefined;
          return true;
        }
        return false;
    }
  }

  /** The folded state as statements, in the order they must run; the fold is then empty. */
  drain(): FoldStep[] {
    const out: FoldStep[] = [];
    const deletes: (readonly string[])[] = [];
    const inserts: Tuple[] = [];
    const updates = new Map<string, { setColumns: number[]; rows: { key: readonly string[]; newTuple: Tuple }[] }>();
    const keyIndexes = this.table.relation.keyIndexes;
    for (const state of this.#keys.values()) {
      if (state.deleteFirst || state.op === 'delete') deletes.push(state.key);
      if (state.op === 'insert') inserts.push(state.tuple!);
      if (state.op === 'update') {
        const setColumns: number[] = [];
        state.tuple!.forEach((v, i) => { if (v.kind !== 'unchanged' && !keyIndexes.includes(i)) setColumns.push(i); });
        const mask = setColumns.join(',');
        let group = updates.get(mask);
        if (!group) { group = { setColumns, rows: [] }; updates.set(mask, group); }
        group.rows.push({ key: state.key, newTuple: state.tuple! });
      }
    }
    this.#keys.clear();
    if (deletes.length) out.push(this.#statements.deleteByKey(this.table, deletes));
    if (inserts.length) out.push({ operation: 'INSERT', rows: inserts });
    for (const group of updates.values()) {
      if (group.setColumns.length === 0 && !hasSettableKey(this.table)) continue;
      out.push(...this.#statements.keyedUpdates(this.table, group.setColumns, group.rows));
    }
    return out;
  }
}
