/**
 * Decides which streamed changes reach the writer.
 *
 * - A transaction whose commit LSN is below the applied position was applied
 *   before a restart; the server may resend it, so it is skipped whole.
 * - A change to table T applies only when T is `ready` and the transaction
 *   committed after T's sync LSN: the copy of T already contains everything
 *   committed up to its snapshot. This is how PostgreSQL's own table sync stays
 *   consistent, and it lets one table be re-copied while the rest stream on.
 */
import type { CommitInfo, RowChange, TransactionInfo, TransactionSink } from '../changes/change.js';
import type { Lsn } from '../core/lsn.js';
import type { Relation } from '../changes/relation-cache.js';
import { tableKey, type TableGateState } from '../core/table-sync.js';

export class ChangeGate implements TransactionSink {
  readonly #next: TransactionSink;
  readonly #tables: ReadonlyMap<string, TableGateState>;
  #appliedLsn: Lsn;
  #skipping = false;
  #commitLsn: Lsn;
  /**
   * A relation's entry is cached. The map changes only through DDL (ddl-apply.ts: a table
   * renamed, created or dropped), and each such change brings a new Relation message, so a
   * new Relation object, before the table's next row.
   */
  readonly #byRelation = new WeakMap<Relation, TableGateState | null>();
  skippedTransactions = 0;
  filteredChanges = 0;

  constructor(next: TransactionSink, tables: ReadonlyMap<string, TableGateState>, appliedLsn: Lsn) {
    this.#next = next;
    this.#tables = tables;
    this.#appliedLsn = appliedLsn;
    this.#commitLsn = appliedLsn;
  }

  begin(tx: TransactionInfo): void | Promise<void> {
    this.#commitLsn = tx.commitLsn;
    this.#skipping = tx.commitLsn < this.#appliedLsn;
    if (this.#skipping) {
      this.skippedTransactions++;
      return;
    }
    return this.#next.begin(tx);
  }

  change(change: RowChange): void | Promise<void> {
    if (this.#skipping) return;
    switch (change.kind) {
      case 'message':
        return this.#next.change(change);
      case 'truncate': {
        const relations = change.relations.filter((r) => this.#appliesTo(r));
        if (relations.length === 0) { this.filteredChanges++; return; }
        return this.#next.change(relations.length === change.relations.length ? change : { ...change, relations });
      }
      default:
        if (!this.#appliesTo(change.relation)) { this.filteredChanges++; return; }
        return this.#next.change(change);
    }
  }

  commit(info: CommitInfo): void | Promise<void> {
    if (this.#skipping) { this.#skipping = false; return; }
    return this.#next.commit(info);
  }

  /** The applied position this gate skips below. */
  get appliedLsn(): Lsn { return this.#appliedLsn; }

  /** Highest sync LSN of any table: a transaction committing above it needs no per-table check. */
  get maxSyncLsn(): Lsn {
    let max = 0n as Lsn;
    for (const state of this.#tables.values()) if (state.syncLsn > max) max = state.syncLsn;
    return max;
  }

  /** Ready at all (for streamed changes, whose commit LSN is not known yet). */
  isReady(relation: Relation): boolean {
    return this.#stateOf(relation)?.state === 'ready';
  }

  #appliesTo(relation: Relation): boolean {
    const state = this.#stateOf(relation);
    return state !== null && state.state === 'ready' && this.#commitLsn > state.syncLsn;
  }

  /** The table's state is looked up once per relation definition, not per row. */
  #stateOf(relation: Relation): TableGateState | null {
    let state = this.#byRelation.get(relation);
    if (state === undefined) {
      state = this.#tables.get(tableKey(relation.schema, relation.name)) ?? null;
      this.#byRelation.set(relation, state);
    }
    return state;
  }
}
