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
 * and takes it back. A transaction whose commit LSN is below the applied
 * position (resent after a restart) is rolled back instead.
 */
import type { CommitInfo, RowChange, StreamedTransactionApplier, TransactionSink } from '../../changes/change.js';
import { DDL_PREFIX } from '../../apply/ddl-stage.js';
import type { ApplyWriter } from './apply-writer.js';
import type { ChangeGate } from '../../apply/change-gate.js';
import type { PgTimestamp } from '../../protocol/messages.js';
import type { Lsn } from '../../core/lsn.js';

interface OpenStream {
  readonly writer: ApplyWriter;
  /** The writer, behind the DDL stage when there is one. */
  readonly sink: TransactionSink;
  /** Savepoints in the order they were set; rolling back to one drops those after it. */
  readonly savepoints: number[];
}

export interface DirectStreamedApplyOptions {
  readonly main: ApplyWriter;
  readonly gate: ChangeGate;
  readonly openWriter: () => Promise<ApplyWriter>;
  /** Connections used at once; further streamed transactions are buffered instead. */
  readonly maxOpen: number;
  /** Where this streaming attempt started: every transaction it delivers commits after it. */
  readonly startLsn: Lsn;
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

  async start(xid: number): Promise<boolean> {
    const { main, gate } = this.#options;
    // A table still being re-copied needs the commit LSN to decide; buffer such transactions.
    const floor = main.durableLsn > this.#options.startLsn ? main.durableLsn : this.#options.startLsn;
    if (this.#open.size >= this.#options.maxOpen || gate.maxSyncLsn > floor) return false;
    if (!main.atBoundary) return false;
    await main.commitPending();
    const writer = await this.#options.openWriter();
    const sink = this.#options.ddlStage?.(writer) ?? writer;
    await sink.begin({ xid, commitLsn: main.durableLsn, commitTime: 0n as PgTimestamp, origin: undefined, streamed: true });
    this.#open.set(xid, { writer, sink, savepoints: [] });
    return true;
  }

  change(xid: number, subxid: number, change: RowChange): void | Promise<void> {
    const stream = this.#open.get(xid)!;
    if (!this.#wanted(change)) return;
    if (subxid !== xid && !stream.savepoints.includes(subxid)) {
      stream.savepoints.push(subxid);
      stream.writer.savepoint(`s${subxid}`);
    }
    const filtered = change.kind === 'truncate' ? { ...change, relations: change.relations.filter((r) => this.#options.gate.isReady(r)) } : change;
    return stream.sink.change(filtered);
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
      if (info.commitLsn < this.#options.gate.appliedLsn || info.commitLsn < main.durableLsn) {
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

  #wanted(change: RowChange): boolean {
    if (change.kind === 'message') return this.#options.ddlStage !== undefined && change.prefix === DDL_PREFIX;
    if (change.kind === 'truncate') return change.relations.some((r) => this.#options.gate.isReady(r));
    return this.#options.gate.isReady(change.relation);
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
