/**
 * Decides which streamed changes reach the writer.
 *
 * - A transaction whose commit LSN is below the applied position was applied
 *   before a restart; the server may resend it, so it is skipped whole.
 * - A change to table T applies only when T is `ready` and the transaction
 *   committed after T's sync LSN: the copy of T already contains everything
 *   committed up to its snapshot. This is how PostgreSQL's own table sync stays
 *   consistent, and it lets one table be re-copied while the rest stream on.
 *
 * Streamed transactions the sink applies while they stream pass through the
 * same rules (`streamed()`): their commit LSN is not known until Stream
 * Commit, so the gate lets the sink take one only when no table's sync LSN is
 * above what the transaction will certainly commit after, filters its
 * changes by table state, and turns the Stream Commit of a transaction
 * applied before a restart into an abort.
 */
import type { CommitInfo, RowChange, StreamedTransactionApplier, TransactionInfo, TransactionSink } from '../changes/change.js';
import type { Lsn } from '../core/lsn.js';
import type { Relation } from '../changes/relation-cache.js';
import { tableKey, type TableGateState } from '../core/table-sync.js';

export class ChangeGate implements TransactionSink {
  readonly #next: TransactionSink;
  readonly #tables: ReadonlyMap<string, TableGateState>;
  #appliedLsn: Lsn;
  #skipping = false;
  #commitLsn: Lsn;
  /** Every transaction the gate sees from now on commits after this (attempt start, or the last commit seen). */
  #floor: Lsn;
  /**
   * A relation's entry is cached. The map changes only through DDL (ddl-apply.ts: a table
   * renamed, created or dropped), and each such change brings a new Relation message, so a
   * new Relation object, before the table's next row.
   */
  readonly #byRelation = new WeakMap<Relation, TableGateState | null>();
  skippedTransactions = 0;
  filteredChanges = 0;

  /** `startLsn`: where the stream starts; every transaction it delivers commits after it. */
  constructor(next: TransactionSink, tables: ReadonlyMap<string, TableGateState>, appliedLsn: Lsn, startLsn: Lsn = appliedLsn) {
    this.#next = next;
    this.#tables = tables;
    this.#appliedLsn = appliedLsn;
    this.#commitLsn = appliedLsn;
    this.#floor = startLsn > appliedLsn ? startLsn : appliedLsn;
  }

  /** The streamed road through this gate to a sink that applies streamed transactions as they stream. */
  streamed(next: StreamedTransactionApplier): StreamedTransactionApplier {
    return new StreamedGate(this, next);
  }

  begin(tx: TransactionInfo): void | Promise<void> {
    this.#commitLsn = tx.commitLsn;
    this.noteCommitOrder(tx.commitLsn);
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

  /** A transaction with this commit LSN reached the stream: every one that starts later commits after it. */
  noteCommitOrder(commitLsn: Lsn): void {
    if (commitLsn > this.#floor) this.#floor = commitLsn;
  }

  /**
   * True when a transaction starting to stream now may be applied before its
   * commit LSN is known: it will commit after the floor, so after every
   * table's sync LSN.
   */
  get streamable(): boolean {
    return this.maxSyncLsn <= this.#floor;
  }

  /** Applies to this table when the commit LSN is known only to be above the floor. */
  appliesWhileStreaming(relation: Relation): boolean {
    return this.isReady(relation);
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

/**
 * The gate on the streamed road: the same table-sync rule and the same
 * "applied before" rule as for ordinary transactions, for a sink that applies
 * a streamed transaction before its commit LSN is known.
 */
class StreamedGate implements StreamedTransactionApplier {
  readonly #gate: ChangeGate;
  readonly #next: StreamedTransactionApplier;

  constructor(gate: ChangeGate, next: StreamedTransactionApplier) {
    this.#gate = gate;
    this.#next = next;
  }

  get openCount(): number { return this.#next.openCount; }

  /** A table still being re-copied needs the commit LSN to decide: such transactions are buffered instead. */
  async start(xid: number, origin: string | undefined): Promise<boolean> {
    if (!this.#gate.streamable) return false;
    return this.#next.start(xid, origin);
  }

  change(xid: number, subxid: number, change: RowChange): void | Promise<void> {
    switch (change.kind) {
      case 'message':
        return this.#next.change(xid, subxid, change);
      case 'truncate': {
        const relations = change.relations.filter((r) => this.#gate.appliesWhileStreaming(r));
        if (relations.length === 0) { this.#gate.filteredChanges++; return; }
        return this.#next.change(xid, subxid, relations.length === change.relations.length ? change : { ...change, relations });
      }
      default:
        if (!this.#gate.appliesWhileStreaming(change.relation)) { this.#gate.filteredChanges++; return; }
        return this.#next.change(xid, subxid, change);
    }
  }

  chunkStart(xid: number): void | Promise<void> { return this.#next.chunkStart(xid); }
  chunkEnd(xid: number): void { this.#next.chunkEnd(xid); }
  abort(xid: number, subxid: number): Promise<void> { return this.#next.abort(xid, subxid); }

  async commit(xid: number, info: CommitInfo, origin: string | undefined): Promise<void> {
    this.#gate.noteCommitOrder(info.commitLsn);
    // Applied before a restart (the server resent it): thrown away, as the ordinary road skips it.
    if (info.commitLsn < this.#gate.appliedLsn) {
      this.#gate.skippedTransactions++;
      return this.#next.abort(xid, xid);
    }
    return this.#next.commit(xid, info, origin);
  }

  reset(): Promise<void> { return this.#next.reset(); }
}
