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
import { mkdtempSync, openSync, writeSync, closeSync, rmSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { RowChange, OpId } from './change.js';
import type { Relation } from './relation-cache.js';
import type { Tuple, TupleValue } from '../protocol/messages.js';
import { PgtideError } from '../control/errors.js';

interface Buffered { readonly subxid: number; readonly change: RowChange }

class SpillFile {
  readonly path: string;
  #fd: number;
  #pending: string[] = [];
  #pendingBytes = 0;

  constructor(file: string) {
    this.path = file;
    this.#fd = openSync(file, 'w');
  }

  append(line: string): void {
    this.#pending.push(line);
    this.#pendingBytes += line.length;
    if (this.#pendingBytes > 1 << 20) this.flush();
  }

  flush(): void {
    if (this.#pending.length === 0) return;
    writeSync(this.#fd, this.#pending.join('\n') + '\n');
    this.#pending = [];
    this.#pendingBytes = 0;
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
  memory: Buffered[] = [];
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

type EncodedValue = null | 0 | string | { readonly b: string };

function encodeTuple(tuple: Tuple): EncodedValue[] {
  return tuple.map((v) => (v.kind === 'null' ? null : v.kind === 'unchanged' ? 0 : v.kind === 'text' ? v.value : { b: Buffer.from(v.value).toString('base64') }));
}

function decodeTuple(encoded: readonly EncodedValue[]): Tuple {
  return encoded.map((v): TupleValue => (v === null ? { kind: 'null' } : v === 0 ? { kind: 'unchanged' } : typeof v === 'string' ? { kind: 'text', value: v } : { kind: 'binary', value: Buffer.from(v.b, 'base64') }));
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
   * were made, then forgets it. The caller must consume the iterator fully.
   */
  async *commit(xid: number): AsyncGenerator<RowChange> {
    const tx = this.#open.get(xid);
    if (!tx) return;
    try {
      if (tx.spill) {
        tx.spill.close();
        const lines = createInterface({ input: createReadStream(tx.spill.path, { highWaterMark: 1 << 20 }), crlfDelay: Infinity });
        for await (const line of lines) {
          if (!line) continue;
          const decoded = this.#decodeLine(line);
          if (!tx.abortedSubxids.has(decoded.subxid)) yield decoded.change;
        }
      } else {
        for (const b of tx.memory) {
          if (!tx.abortedSubxids.has(b.subxid)) yield b.change;
        }
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
        largest.spill = new SpillFile(path.join(this.#spillDir, `xid-${largest.xid}.jsonl`));
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
    let record: unknown;
    switch (change.kind) {
      case 'insert':
        this.#relations.set(change.relation.version, change.relation);
        record = [subxid, change.opId, 'i', change.relation.version, encodeTuple(change.newTuple)];
        break;
      case 'update':
        this.#relations.set(change.relation.version, change.relation);
        record = [subxid, change.opId, 'u', change.relation.version, encodeTuple(change.newTuple), change.oldTuple ? encodeTuple(change.oldTuple) : null];
        break;
      case 'delete':
        this.#relations.set(change.relation.version, change.relation);
        record = [subxid, change.opId, 'd', change.relation.version, encodeTuple(change.oldTuple)];
        break;
      case 'truncate':
        for (const r of change.relations) this.#relations.set(r.version, r);
        record = [subxid, change.opId, 't', change.relations.map((r) => r.version), change.cascade, change.restartIdentity];
        break;
      case 'message':
        record = [subxid, change.opId, 'm', change.prefix, Buffer.from(change.content).toString('base64')];
        break;
    }
    const line = JSON.stringify(record);
    this.#spilledBytes += line.length + 1;
    tx.spill!.append(line);
  }

  #relation(version: number): Relation {
    const relation = this.#relations.get(version);
    if (!relation) throw new PgtideError('INTERNAL', `spilled change refers to unknown relation version ${version}`);
    return relation;
  }

  #decodeLine(line: string): Buffered {
    const r = JSON.parse(line) as [number, number, string, ...unknown[]];
    const subxid = r[0];
    const opId = r[1] as OpId;
    switch (r[2]) {
      case 'i': return { subxid, change: { kind: 'insert', opId, relation: this.#relation(r[3] as number), newTuple: decodeTuple(r[4] as EncodedValue[]) } };
      case 'u': return { subxid, change: { kind: 'update', opId, relation: this.#relation(r[3] as number), newTuple: decodeTuple(r[4] as EncodedValue[]), oldTuple: r[5] ? decodeTuple(r[5] as EncodedValue[]) : undefined } };
      case 'd': return { subxid, change: { kind: 'delete', opId, relation: this.#relation(r[3] as number), oldTuple: decodeTuple(r[4] as EncodedValue[]) } };
      case 't': return { subxid, change: { kind: 'truncate', opId, relations: (r[3] as number[]).map((v) => this.#relation(v)), cascade: r[4] as boolean, restartIdentity: r[5] as boolean } };
      default: return { subxid, change: { kind: 'message', opId, prefix: r[3] as string, content: Buffer.from(r[4] as string, 'base64') } };
    }
  }
}
