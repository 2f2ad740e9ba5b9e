/**
 * Applies large streamed transactions while they stream, each on its own
 * target connection inside one open transaction, instead of buffering them
 * until Stream Commit (PostgreSQL's `streaming = parallel` does the same in
 * the server). The target then works during the source transaction, not
 * after it, and pgtide's memory stays flat whatever the transaction's size.
 *
 * Why this cannot deadlock or reorder: before a streamed chunk is applied, the
 * main writer commits what it holds (the chunk comes after those transactions
 * in the WAL). A transaction that commits before the streamed one cannot have
 * touched the rows it holds on the source (the source's row locks would have
 * made it wait), so the main writer never blocks on the streamed connection.
 * Subtransactions map to savepoints: an aborted one is rolled back to its
 * savepoint, which also drops its children, exactly as on the source.
 *
 * At Stream Commit the main writer commits first, hands the replication origin
 * over for the streamed commit (so progress and origin marking stay exact),
 * and takes it back. Until then the streamed connection writes under an
 * origin of its own (one per connection slot, `<origin>_s<slot>`), so that
 * its rows, too, are marked as replicated for the next edge's origin filter. A transaction whose commit LSN is below the applied
 * position (resent after a restart) is rolled back instead.
 *
 * Which streamed transactions and changes reach it is the gate's decision
 * (apply/change-gate.ts, `streamed()`), as for every other transaction: this
 * file only applies what passes. Logical messages pass the gate and are not
 * applied to a PostgreSQL target, as in the main writer.
 */
import type { CommitInfo, RowChange, StreamedTransactionApplier, TransactionSink } from '../../changes/change.js';
import type { ApplyWriter } from './apply-writer.js';
import type { PgTimestamp } from '../../protocol/messages.js';
import type { Lsn } from '../../core/lsn.js';

interface OpenStream {
  readonly writer: ApplyWriter;
  readonly slot: number;
  /** The writer, behind the DDL stage when there is one. */
  readonly sink: TransactionSink;
  /** Savepoints in the order they were set; rolling back to one drops those after it. */
  readonly savepoints: number[];
}

export interface DirectStreamedApplyOptions {
  readonly main: ApplyWriter;
  /** `slot` (0 … maxOpen - 1) is free while this writer lives: it names the writer's own origin. */
  readonly openWriter: (slot: number) => Promise<ApplyWriter>;
  /** Connections used at once; further streamed transactions are buffered instead. */
  readonly maxOpen: number;
  /**
   * Puts the DDL stage in front of a streamed transaction's writer, so a schema change inside
   * it applies in place (its position carries the applied position at its start as commit LSN,
   * which is not known yet).
   */
  readonly ddlStage?: (writer: ApplyWriter) => TransactionSink;
}

export class DirectStreamedApply implements StreamedTransactionApplier {
  readonly #options: DirectStreamedApplyOptions;
  readonly #open = new Map<number, OpenStream>();

  constructor(options: DirectStreamedApplyOptions) {
    this.#options = options;
  }

  get openCount(): number { return this.#open.size; }

  async start(xid: number, _origin: string | undefined): Promise<boolean> {
    const { main } = this.#options;
    if (this.#open.size >= this.#options.maxOpen) return false;
    if (!main.atBoundary) return false;
    await main.commitPending();
    const used = new Set([...this.#open.values()].map((s) => s.slot));
    let slot = 0;
    while (used.has(slot)) slot++;
    const writer = await this.#options.openWriter(slot);
    const sink = this.#options.ddlStage?.(writer) ?? writer;
    await sink.begin({ xid, commitLsn: main.durableLsn, commitTime: 0n as PgTimestamp, origin: undefined, streamed: true });
    this.#open.set(xid, { writer, slot, sink, savepoints: [] });
    return true;
  }

  change(xid: number, subxid: number, change: RowChange): void | Promise<void> {
    const stream = this.#open.get(xid)!;
    // A schema change inside the transaction goes to the DDL stage, which applies it in place;
    // other messages are not applied to a PostgreSQL target.
    if (change.kind === 'message' && this.#options.ddlStage === undefined) return;
    if (subxid !== xid && !stream.savepoints.includes(subxid)) {
      stream.savepoints.push(subxid);
      stream.writer.savepoint(`s${subxid}`);
    }
    return stream.sink.change(change);
  }

  /**
   * Commits what the main writer holds before a later chunk is applied. A
   * transaction that committed on the source after the streamed one started
   * may have changed rows the streamed one changes next (it took them after
   * that commit). Left uncommitted in the main writer's batch, their row locks
   * would make the streamed connection wait on a batch that is only committed
   * once the stream moves on: a wait with no end. Everything received before
   * this chunk is at a transaction boundary here, so it can be committed.
   */
  async chunkStart(xid: number): Promise<void> {
    if (!this.#open.has(xid)) return;
    const { main } = this.#options;
    if (!main.hasPendingWork || !main.atBoundary) return;
    await main.commitPending();
  }

  chunkEnd(xid: number): void {
    this.#open.get(xid)?.writer.emitAll();
  }

  async abort(xid: number, subxid: number): Promise<void> {
    const stream = this.#open.get(xid);
    if (!stream) return;
    if (subxid === xid) {
      this.#open.delete(xid);
      await stream.writer.close();
      return;
    }
    const at = stream.savepoints.indexOf(subxid);
    if (at < 0) return; // the subtransaction changed nothing we applied
    stream.writer.rollbackToSavepoint(`s${subxid}`);
    stream.savepoints.length = at + 1;
  }

  async commit(xid: number, info: CommitInfo, _origin: string | undefined): Promise<void> {
    const stream = this.#open.get(xid);
    if (!stream) return;
    this.#open.delete(xid);
    const { main } = this.#options;
    try {
      if (info.commitLsn < main.durableLsn) {
        await stream.writer.close(); // applied before a restart: roll back
        return;
      }
      await main.commitPending();
      await main.releaseOrigin();
      try {
        await stream.writer.acquireOrigin();
        await stream.writer.commit(info);
        // Confirmed, not only sent: noteDurable below lets the slot move past this transaction.
        await stream.writer.commitPending();
        await stream.writer.releaseOrigin();
      } catch (error) {
        // The failed writer may still hold the origin: closing it frees the origin, so the main
        // writer's taking it back does not fail and hide this error (which decides what follows:
        // a replay, a retry or a stop).
        await stream.writer.close();
        throw error;
      } finally {
        await main.acquireOrigin();
      }
      main.noteDurable(info.endLsn as Lsn, info.commitTime);
      this.#absorbStats(stream.writer);
    } finally {
      await stream.writer.close();
    }
  }

  async reset(): Promise<void> {
    const streams = [...this.#open.values()];
    this.#open.clear();
    await Promise.allSettled(streams.map((s) => s.writer.close()));
  }

  #absorbStats(writer: ApplyWriter): void {
    const into = this.#options.main.stats;
    into.transactions += writer.stats.transactions;
    into.changes += writer.stats.changes;
    into.statements += writer.stats.statements;
    into.copies += writer.stats.copies;
    into.missingRows += writer.stats.missingRows;
  }
}
