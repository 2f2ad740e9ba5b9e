/**
 * Turns the pgoutput message sequence into whole transactions for a sink.
 *
 * Plain transactions arrive complete and committed (Begin … Commit) and are
 * passed through as they come, so they need no buffering. Streamed
 * transactions (Stream Start … Stream Stop chunks, then Stream Commit or
 * Stream Abort) are held in StreamedTransactions and replayed at commit.
 * Either way the sink sees begin, changes, commit, in commit order.
 */
import type { PgoutputMessage, PgTimestamp } from '../protocol/messages.js';
import type { OpId, RowChange, StreamedTransactionApplier, TransactionSink } from './change.js';
import { RelationCache } from './relation-cache.js';
import { StreamedTransactions, type StreamedTransactionsOptions } from './streamed-transactions.js';
import type { Lsn } from '../core/lsn.js';
import { PgtideError } from '../core/errors.js';

interface PendingBegin { readonly xid: number; readonly commitLsn: Lsn; readonly commitTime: PgTimestamp; origin: string | undefined }

export class TransactionAssembler {
  readonly relations = new RelationCache();
  readonly #sink: TransactionSink;
  readonly #streamed: StreamedTransactions;
  #nextOpId = 1;
  /** A plain transaction whose Begin has been seen but not yet passed on (an Origin message may follow). */
  #pending: PendingBegin | undefined;
  #inPlainTx = false;
  /** The transaction whose chunk is being streamed now (between Stream Start and Stream Stop). */
  #streamXid: number | undefined;
  readonly #direct: StreamedTransactionApplier | undefined;
  /** Streamed transactions the direct applier took; the rest are buffered. */
  readonly #directXids = new Set<number>();
  /**
   * A first chunk not yet offered to the direct applier: the offer waits for the chunk's
   * first change (or its end), because the Origin message comes right after Stream Start
   * and the applier decides by it (apply/origin-filter.ts).
   */
  #offerXid: number | undefined;

  constructor(sink: TransactionSink, options: StreamedTransactionsOptions, direct?: StreamedTransactionApplier) {
    this.#sink = sink;
    this.#streamed = new StreamedTransactions(options);
    this.#direct = direct;
  }

  /** True while a transaction is partly received: its position must not be confirmed. */
  get inFlight(): boolean {
    return this.#inPlainTx || this.#streamXid !== undefined || this.#streamed.openCount > 0 || this.#directXids.size > 0;
  }

  get streamedMemoryBytes(): number { return this.#streamed.memoryBytes; }
  get spilledBytes(): number { return this.#streamed.spilledBytes; }

  /** Forget partial state after the connection dropped; the server resends from the confirmed position. */
  async reset(): Promise<void> {
    this.#pending = undefined;
    this.#inPlainTx = false;
    this.#streamXid = undefined;
    this.#offerXid = undefined;
    this.#streamed.reset();
    this.#directXids.clear();
    await this.#direct?.reset();
  }

  /**
   * Handles one message. Returns a promise only when the sink asked to wait,
   * so the common path (a change into a buffering writer) stays synchronous.
   */
  push(message: PgoutputMessage): void | Promise<void> {
    switch (message.tag) {
      case 'begin':
        this.#inPlainTx = true;
        this.#pending = { xid: message.xid, commitLsn: message.finalLsn, commitTime: message.commitTime, origin: undefined };
        return;
      case 'origin':
        if (this.#pending) this.#pending.origin = message.originName;
        else if (this.#streamXid !== undefined) this.#streamed.setOrigin(this.#streamXid, message.originName);
        return;
      case 'relation':
        this.relations.update(message);
        return;
      case 'type':
        return;
      case 'insert':
        return this.#change(message.xid, { kind: 'insert', opId: this.#op(), relation: this.relations.get(message.relationOid), newTuple: message.newTuple });
      case 'update':
        return this.#change(message.xid, { kind: 'update', opId: this.#op(), relation: this.relations.get(message.relationOid), oldTuple: message.oldTuple, newTuple: message.newTuple });
      case 'delete':
        return this.#change(message.xid, { kind: 'delete', opId: this.#op(), relation: this.relations.get(message.relationOid), oldTuple: message.oldTuple });
      case 'truncate':
        return this.#change(message.xid, { kind: 'truncate', opId: this.#op(), relations: message.relationOids.map((oid) => this.relations.get(oid)), cascade: message.cascade, restartIdentity: message.restartIdentity });
      case 'message':
        // Non-transactional messages are not part of any transaction; the engine does not apply them.
        if (!message.transactional) return;
        return this.#change(message.xid, { kind: 'message', opId: this.#op(), prefix: message.prefix, content: message.content });
      case 'commit':
        return this.#commitPlain(message.commitLsn, message.endLsn, message.commitTime);
      case 'stream_start':
        this.#streamXid = message.xid;
        if (message.firstSegment && this.#direct) { this.#offerXid = message.xid; return; }
        if (this.#directXids.has(message.xid)) return this.#direct!.chunkStart(message.xid);
        return;
      case 'stream_stop':
        if (this.#offerXid !== undefined) return this.#offerDirect().then(() => this.#stopChunk());
        return this.#stopChunk();
      case 'stream_abort':
        if (this.#directXids.has(message.xid)) {
          if (message.subxid === message.xid) {
            this.#directXids.delete(message.xid);
            this.#streamed.forget(message.xid);
          }
          return this.#direct!.abort(message.xid, message.subxid);
        }
        this.#streamed.abort(message.xid, message.subxid);
        return;
      case 'stream_commit':
        return this.#commitStreamed(message.xid, message.commitLsn, message.endLsn, message.commitTime);
      case 'begin_prepare':
      case 'prepare':
      case 'commit_prepared':
      case 'rollback_prepared':
      case 'stream_prepare':
        // pgtide does not enable two_phase on its slots, so the server never sends these.
        throw new PgtideError('PROTOCOL_VIOLATION', `unexpected two-phase message ${message.tag}: pgtide's slots are created without two_phase. Drop the slot with \`pgtide drop\` and start again.`);
    }
  }

  #op(): OpId {
    return this.#nextOpId++ as OpId;
  }

  async #offerDirect(): Promise<void> {
    const xid = this.#offerXid!;
    this.#offerXid = undefined;
    if (await this.#direct!.start(xid, this.#streamed.originOf(xid))) this.#directXids.add(xid);
  }

  #stopChunk(): void {
    if (this.#streamXid !== undefined && this.#directXids.has(this.#streamXid)) this.#direct!.chunkEnd(this.#streamXid);
    this.#streamXid = undefined;
  }

  #change(xid: number | undefined, change: RowChange): void | Promise<void> {
    if (xid !== undefined && this.#streamXid !== undefined) {
      if (this.#offerXid !== undefined) return this.#offerDirect().then(() => this.#change(xid, change));
      if (this.#directXids.has(this.#streamXid)) return this.#direct!.change(this.#streamXid, xid, change);
      this.#streamed.add(this.#streamXid, xid, change);
      return;
    }
    if (!this.#inPlainTx) {
      throw new PgtideError('PROTOCOL_VIOLATION', `a ${change.kind} change arrived outside any transaction`);
    }
    const pending = this.#pending;
    if (pending) {
      this.#pending = undefined;
      const began = this.#sink.begin({ ...pending, streamed: false });
      if (began) return began.then(() => this.#sink.change(change));
    }
    return this.#sink.change(change);
  }

  async #commitPlain(commitLsn: Lsn, endLsn: Lsn, commitTime: PgTimestamp): Promise<void> {
    const pending = this.#pending;
    this.#pending = undefined;
    // An empty transaction (all its changes filtered by the publication) still
    // moves the applied position forward, so it is passed on too.
    if (pending) await this.#sink.begin({ ...pending, streamed: false });
    await this.#sink.commit({ commitLsn, endLsn, commitTime });
    this.#inPlainTx = false;
  }

  async #commitStreamed(xid: number, commitLsn: Lsn, endLsn: Lsn, commitTime: PgTimestamp): Promise<void> {
    if (this.#directXids.has(xid)) {
      this.#directXids.delete(xid);
      await this.#direct!.commit(xid, { commitLsn, endLsn, commitTime }, this.#streamed.originOf(xid));
      this.#streamed.forget(xid);
      return;
    }
    const origin = this.#streamed.originOf(xid);
    await this.#sink.begin({ xid, commitLsn, commitTime, origin, streamed: true });
    for await (const batch of this.#streamed.commit(xid)) {
      for (const change of batch) {
        const waited = this.#sink.change(change);
        if (waited) await waited;
      }
    }
    await this.#sink.commit({ commitLsn, endLsn, commitTime });
  }
}
