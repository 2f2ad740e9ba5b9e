/**
 * Drops source transactions by replication origin (loop prevention for
 * two-way pairs, meshes, chains and hubs; see docs/topologies.md).
 *
 * Both filters depend on every row pgtide writes carrying an origin in the
 * target's WAL: the server's filter judges each WAL record by the origin its
 * session had, and a streamed transaction's Origin message names the origin
 * of its first records (seen on PostgreSQL 14: the first chunk of a
 * transaction pgtide applied while it streamed named that connection's own
 * origin). So a streamed transaction's connection writes under an origin of
 * its own (`ApplyWriterOptions.markOrigin`), not only its commit; without it,
 * the reverse edge of a two-way pair sent large transactions back.
 *
 * On a PostgreSQL 16+ source with `origins: none` the publisher already drops
 * them (`origin 'none'`), and this stage never sees one; on 14 and 15, and for
 * allow/deny lists on any version, this stage is the filter.
 *
 * A dropped transaction is still passed on as an empty one (begin, commit):
 * its commit moves the applied position, exactly as a transaction whose
 * changes the publication filtered out, so the slot is confirmed past it.
 *
 * Streamed transactions: only the first chunk carries the Origin message
 * (pgoutput_stream_start sends it only when the transaction was not streamed
 * before). The assembler remembers it per xid and passes it at Stream Commit
 * for buffered transactions, and offers a transaction to the direct streamed
 * applier only once that first chunk's Origin message was read. `streamed()`
 * wraps that applier: a dropped transaction is taken (so it is neither applied
 * nor buffered and spilled), its chunks are discarded, and at Stream Commit an
 * empty transaction goes down the main chain in its place.
 */
import type { CommitInfo, RowChange, StreamedTransactionApplier, TransactionInfo, TransactionSink } from '../changes/change.js';
import type { OriginMatcher } from './origin-policy.js';

export class OriginFilter implements TransactionSink {
  readonly #next: TransactionSink;
  readonly #matcher: OriginMatcher;
  #dropping = false;
  /** Source transactions dropped for their origin (plain and streamed). */
  droppedTransactions = 0;

  constructor(next: TransactionSink, matcher: OriginMatcher) {
    this.#next = next;
    this.#matcher = matcher;
  }

  begin(tx: TransactionInfo): void | Promise<void> {
    this.#dropping = !this.#matcher.accepts(tx.origin);
    if (this.#dropping) this.droppedTransactions++;
    return this.#next.begin(tx);
  }

  change(change: RowChange): void | Promise<void> {
    if (this.#dropping) return;
    return this.#next.change(change);
  }

  commit(info: CommitInfo): void | Promise<void> {
    this.#dropping = false;
    return this.#next.commit(info);
  }

  /** The direct streamed applier, behind the same filter (`inner` undefined: buffer every accepted one). */
  streamed(inner: StreamedTransactionApplier | undefined): StreamedTransactionApplier {
    return new FilteredStreamedApply(this, this.#next, this.#matcher, inner);
  }

  /** Counted here so one figure covers both paths. */
  noteDropped(): void {
    this.droppedTransactions++;
  }
}

class FilteredStreamedApply implements StreamedTransactionApplier {
  readonly #filter: OriginFilter;
  readonly #main: TransactionSink;
  readonly #matcher: OriginMatcher;
  readonly #inner: StreamedTransactionApplier | undefined;
  /** Streamed transactions taken only to be dropped. */
  readonly #dropped = new Set<number>();

  constructor(filter: OriginFilter, main: TransactionSink, matcher: OriginMatcher, inner: StreamedTransactionApplier | undefined) {
    this.#filter = filter;
    this.#main = main;
    this.#matcher = matcher;
    this.#inner = inner;
  }

  get openCount(): number { return (this.#inner?.openCount ?? 0) + this.#dropped.size; }

  async start(xid: number, origin: string | undefined): Promise<boolean> {
    if (!this.#matcher.accepts(origin)) {
      this.#dropped.add(xid);
      return true;
    }
    return this.#inner ? this.#inner.start(xid, origin) : false;
  }

  change(xid: number, subxid: number, change: RowChange): void | Promise<void> {
    if (this.#dropped.has(xid)) return;
    return this.#inner!.change(xid, subxid, change);
  }

  chunkStart(xid: number): void | Promise<void> {
    if (this.#dropped.has(xid)) return;
    return this.#inner!.chunkStart(xid);
  }

  chunkEnd(xid: number): void {
    if (this.#dropped.has(xid)) return;
    this.#inner!.chunkEnd(xid);
  }

  async abort(xid: number, subxid: number): Promise<void> {
    if (this.#dropped.has(xid)) {
      if (subxid === xid) this.#dropped.delete(xid);
      return;
    }
    await this.#inner!.abort(xid, subxid);
  }

  async commit(xid: number, info: CommitInfo, origin: string | undefined): Promise<void> {
    if (!this.#dropped.delete(xid)) return this.#inner!.commit(xid, info, origin);
    this.#filter.noteDropped();
    await this.#main.begin({ xid, commitLsn: info.commitLsn, commitTime: info.commitTime, origin, streamed: true });
    await this.#main.commit(info);
  }

  async reset(): Promise<void> {
    this.#dropped.clear();
    await this.#inner?.reset();
  }
}
