/**
 * Buffers streamed (large, in-progress) transactions until their Stream Commit.
 *
 * With `streaming` on, the server sends a transaction's changes in chunks
 * before it commits, interleaved with other transactions, and it may still
 * abort (wholly, or one subtransaction at a time). Nothing may reach the target
 * before Stream Commit, so changes are held here: in memory up to a cap shared
 * by all open streamed transactions, then spilled, one append-only file per
 * transaction. Aborted subtransactions are remembered and skipped on replay.
 */
import { mkdtempSync, openSync, writeSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RowChange } from './change.js';
import type { Relation } from './relation-cache.js';
import type { Tuple } from '../protocol/messages.js';
import { PgtideError } from '../core/errors.js';
import { readSpill, SpillEncoder, type SpilledChange } from './spill-codec.js';

class SpillFile {
  readonly path: string;
  #fd: number;
  readonly #encoder = new SpillEncoder();

  constructor(file: string) {
    this.path = file;
    this.#fd = openSync(file, 'w');
  }

  append(subxid: number, change: RowChange, version: (relation: Relation) => number): number {
    const before = this.#encoder.size;
    this.#encoder.append(subxid, change, version);
    const added = this.#encoder.size - before;
    if (this.#encoder.size > 1 << 20) this.flush();
    return added;
  }

  flush(): void {
    if (this.#encoder.size === 0) return;
    writeSync(this.#fd, this.#encoder.bytes());
    this.#encoder.clear();
  }

  /** Idempotent: a second close must not close whatever file reused the descriptor. */
  close(): void {
    if (this.#fd < 0) return;
    this.flush();
    closeSync(this.#fd);
    this.#fd = -1;
  }
}

class StreamedTransaction {
  readonly xid: number;
  origin: string | undefined;
  memory: SpilledChange[] = [];
  memoryBytes = 0;
  spill: SpillFile | undefined;
  readonly abortedSubxids = new Set<number>();
  changes = 0;

  constructor(xid: number) {
    this.xid = xid;
  }
}

/** Rough in-memory size of a change: enough to keep the cap honest. */
function sizeOf(change: RowChange): number {
  let size = 96;
  const add = (tuple: Tuple | undefined) => {
    if (!tuple) return;
    for (const value of tuple) size += 16 + (value.kind === 'text' ? value.value.length * 2 : value.kind === 'binary' ? value.value.length : 0);
  };
  if (change.kind === 'insert') add(change.newTuple);
  else if (change.kind === 'update') { add(change.oldTuple); add(change.newTuple); }
  else if (change.kind === 'delete') add(change.oldTuple);
  else if (change.kind === 'message') size += change.content.length;
  return size;
}

export interface StreamedTransactionsOptions {
  /** Bytes of buffered changes kept in memory across all open streamed transactions. */
  readonly memoryCap: number;
  readonly spillDir?: string | undefined;
}

export class StreamedTransactions {
  readonly #open = new Map<number, StreamedTransaction>();
  readonly #memoryCap: number;
  readonly #spillRoot: string;
  #spillDir: string | undefined;
  #memoryBytes = 0;
  /** Relations referenced by spilled changes, by cache version, so replay sees the definition current at the time. */
  readonly #relations = new Map<number, Relation>();
  #spilledBytes = 0;

  constructor(options: StreamedTransactionsOptions) {
    this.#memoryCap = options.memoryCap;
    this.#spillRoot = options.spillDir ?? tmpdir();
  }

  get memoryBytes(): number { return this.#memoryBytes; }
  get spilledBytes(): number { return this.#spilledBytes; }
  get openCount(): number { return this.#open.size; }

  setOrigin(xid: number, origin: string): void {
    this.#get(xid).origin = origin;
  }

  originOf(xid: number): string | undefined {
    return this.#open.get(xid)?.origin;
  }

  add(xid: number, subxid: number, change: RowChange): void {
    const tx = this.#get(xid);
    tx.changes++;
    if (tx.spill) {
      this.#writeSpilled(tx, subxid, change);
      return;
    }
    const size = sizeOf(change);
    tx.memory.push({ subxid, change });
    tx.memoryBytes += size;
    this.#memoryBytes += size;
    if (this.#memoryBytes > this.#memoryCap) this.#spillLargest();
  }

  /** Stream Abort: the whole transaction when subxid === xid, else one subtransaction. */
  abort(xid: number, subxid: number): void {
    const tx = this.#open.get(xid);
    if (!tx) return;
    if (subxid === xid) {
      this.#discard(tx);
      return;
    }
    tx.abortedSubxids.add(subxid);
    if (!tx.spill) {
      const kept = tx.memory.filter((b) => b.subxid !== subxid);
      const freed = tx.memory.length - kept.length;
      if (freed > 0) {
        let bytes = 0;
        for (const b of kept) bytes += sizeOf(b.change);
        this.#memoryBytes -= tx.memoryBytes - bytes;
        tx.memoryBytes = bytes;
        tx.memory = kept;
      }
    }
  }

  /**
   * Stream Commit: yields the transaction's surviving changes in the order they
   * were made, in batches (one await per batch, not per change), then forgets
   * it. The caller must consume the iterator fully.
   */
  async *commit(xid: number): AsyncGenerator<readonly RowChange[]> {
    const tx = this.#open.get(xid);
    if (!tx) return;
    const aborted = tx.abortedSubxids;
    const surviving = (batch: readonly SpilledChange[]): RowChange[] => {
      const out: RowChange[] = new Array<RowChange>(batch.length);
      let n = 0;
      for (const b of batch) if (aborted.size === 0 || !aborted.has(b.subxid)) out[n++] = b.change;
      out.length = n;
      return out;
    };
    try {
      if (tx.spill) {
        tx.spill.close();
        for await (const batch of readSpill(tx.spill.path, (v) => this.#relation(v))) yield surviving(batch);
      } else {
        yield surviving(tx.memory);
      }
    } finally {
      this.#discard(tx);
    }
  }

  /** Forgets a transaction that was applied elsewhere (its origin was recorded here). */
  forget(xid: number): void {
    const tx = this.#open.get(xid);
    if (tx) this.#discard(tx);
  }

  /** Drops everything (reconnect: the server will resend open transactions from the start). */
  reset(): void {
    for (const tx of [...this.#open.values()]) this.#discard(tx);
    this.#relations.clear();
  }

  #get(xid: number): StreamedTransaction {
    let tx = this.#open.get(xid);
    if (!tx) {
      tx = new StreamedTransaction(xid);
      this.#open.set(xid, tx);
    }
    return tx;
  }

  #discard(tx: StreamedTransaction): void {
    this.#memoryBytes -= tx.memoryBytes;
    tx.memory = [];
    tx.memoryBytes = 0;
    if (tx.spill) {
      try { tx.spill.close(); } catch { /* already closed */ }
      rmSync(tx.spill.path, { force: true });
      tx.spill = undefined;
    }
    this.#open.delete(tx.xid);
    if (this.#open.size === 0 && this.#spillDir) {
      rmSync(this.#spillDir, { recursive: true, force: true });
      this.#spillDir = undefined;
    }
  }

  #spillLargest(): void {
    while (this.#memoryBytes > this.#memoryCap) {
      let largest: StreamedTransaction | undefined;
      for (const tx of this.#open.values()) {
        if (!tx.spill && (!largest || tx.memoryBytes > largest.memoryBytes)) largest = tx;
      }
      if (!largest || largest.memoryBytes === 0) return;
      if (!this.#spillDir) this.#spillDir = mkdtempSync(path.join(this.#spillRoot, 'pgtide-spill-'));
      try {
        largest.spill = new SpillFile(path.join(this.#spillDir, `xid-${largest.xid}.spill`));
      } catch (error) {
        throw new PgtideError('INTERNAL', `cannot spill a large transaction to ${this.#spillDir}: ${String(error)}. Free disk space or set spillDir to a writable folder with room.`, { cause: error });
      }
      for (const b of largest.memory) this.#writeSpilled(largest, b.subxid, b.change);
      this.#memoryBytes -= largest.memoryBytes;
      largest.memory = [];
      largest.memoryBytes = 0;
    }
  }

  #writeSpilled(tx: StreamedTransaction, subxid: number, change: RowChange): void {
    this.#spilledBytes += tx.spill!.append(subxid, change, this.#remember);
  }

  /** Spilled changes name their relation by cache version; replay looks the definition up here. */
  readonly #remember = (relation: Relation): number => {
    this.#relations.set(relation.version, relation);
    return relation.version;
  };

  #relation(version: number): Relation {
    const relation = this.#relations.get(version);
    if (!relation) throw new PgtideError('INTERNAL', `spilled change refers to unknown relation version ${version}`);
    return relation;
  }
}
