/**
 * The NDJSON sink: each committed source transaction becomes one JSON line
 * (line-format.ts) in a file or on standard output; its position is recorded
 * in a state file (state-file.ts).
 *
 * Exactly once per transaction across kill -9, for a file. The invariant:
 *
 *   1. a batch's lines are appended and fsynced BEFORE the state file records
 *      the batch's position; the stream loop acknowledges to the source only
 *      that recorded position (`durableLsn`), so the slot never moves past a
 *      line that is not on disk;
 *   2. on open, anything after the file's last newline (a torn write) is cut
 *      off, and the last complete line's commit LSN is taken as the position
 *      when it is past the recorded one (a crash after the fsync of the lines
 *      and before the state was renamed into place);
 *   3. a transaction whose commit LSN is at or below that position is skipped
 *      (the server resends from the slot's confirmed position, which may lag).
 *
 * So a transaction is either in the file once, or not yet, in which case the
 * slot still holds it. Lines of a batch not yet durable when the loop stops
 * or fails are cut off again (rollback). Standard output cannot be read back
 * or cut: there a crash between the write and the state update repeats the
 * batch (at least once).
 *
 * Transactions with no change left after the gate (other tables, pgtide's own
 * heartbeat messages) write no line, but move the position like any other.
 */
import type { CommitInfo, RowChange, TransactionInfo } from '../../changes/change.js';
import { formatLsn, parseLsn, ZERO_LSN, type Lsn } from '../../core/lsn.js';
import { PgtideError } from '../../core/errors.js';
import type { Sink } from '../sink.js';
import { changeJson, formatCommitTime, linePositions, lineHead, lineTail } from './line-format.js';
import { FileOutput, StdoutOutput, type LineOutput } from './output.js';
import type { NdjsonStateFile, WrittenPosition } from './state-file.js';

export interface NdjsonSinkOptions {
  /** A file path, or `-` for standard output. */
  readonly path: string;
  readonly state: NdjsonStateFile;
  readonly batchMaxTransactions: number;
  readonly batchMaxAgeMs: number;
  /** Transactional logical messages with these prefixes are pgtide's own (the heartbeat) and not written. */
  readonly skipMessagePrefixes?: readonly string[];
  /** Told about repairs made on open (a torn line cut off, a position taken from the file). */
  readonly onRecovery?: (what: string, detail: Readonly<Record<string, string | number>>) => void;
}

/** Lines queued beyond this many bytes go to a file before the batch commits (a huge transaction must not sit in memory). */
const SPILL_TO_FILE_BYTES = 1 << 20;

export class NdjsonSink implements Sink {
  readonly #options: NdjsonSinkOptions;
  readonly #output: LineOutput;
  readonly #skipPrefixes: ReadonlySet<string>;
  #durable: WrittenPosition;
  /** Bytes of the output that hold durable lines only: a rollback cuts back to here. */
  #durableSize: number;
  /** Queued text not yet appended. */
  #chunks: string[] = [];
  #chunkBytes = 0;
  /** Text appended but not yet durable. */
  #appended = false;
  /** Last committed transaction of the open batch, not yet durable. */
  #pending: (WrittenPosition & { readonly commitTime: string }) | undefined;
  #pendingTransactions = 0;
  #batchStarted = 0;
  #inTx = false;
  #skipTx = false;
  #tx: TransactionInfo | undefined;
  #txChanges = 0;
  #committing = false;
  readonly stats = { transactions: 0, changes: 0, lines: 0, skippedTransactions: 0 };

  private constructor(options: NdjsonSinkOptions, output: LineOutput, durable: WrittenPosition) {
    this.#options = options;
    this.#output = output;
    this.#skipPrefixes = new Set(options.skipMessagePrefixes ?? []);
    this.#durable = durable;
    this.#durableSize = output.size;
  }

  static async open(options: NdjsonSinkOptions): Promise<NdjsonSink> {
    const recorded = options.state.position ?? { commitLsn: ZERO_LSN, endLsn: ZERO_LSN };
    if (options.path === '-') return new NdjsonSink(options, new StdoutOutput(), recorded);
    const file = await FileOutput.open(options.path);
    try {
      const { line, completeSize } = await file.lastLine();
      if (completeSize < file.size) {
        options.onRecovery?.('cut off a torn last line (a write interrupted by a crash)', { file: options.path, bytes: file.size - completeSize });
        await file.truncate(completeSize);
      }
      // Lines a failed attempt appended may still be only in the page cache; they count once on disk.
      await file.sync();
      let durable = recorded;
      if (line !== undefined) {
        const found = linePositions(line);
        if (!found) {
          throw new PgtideError('STATE_CORRUPT', `the last line of ${options.path} is not a pgtide transaction line, so pgtide cannot tell where it stopped. Point target.path at a file only pgtide writes (or move this one away).`);
        }
        const inFile = { commitLsn: parseLsn(found.commitLsn), endLsn: parseLsn(found.endLsn) };
        if (inFile.commitLsn > recorded.commitLsn) {
          // Crash after the lines were durable and before the state file was replaced.
          options.onRecovery?.('took the position from the last line of the file (its state update was lost)', { file: options.path, commitLsn: formatLsn(inFile.commitLsn) });
          await options.state.setPosition(inFile, null);
          durable = inFile;
        }
      }
      return new NdjsonSink(options, file, durable);
    } catch (error) {
      await file.close();
      throw error;
    }
  }

  get durableLsn(): Lsn { return this.#durable.endLsn; }
  get hasPendingWork(): boolean { return this.#inTx || this.#pending !== undefined || this.#committing || this.#appended; }
  get atBoundary(): boolean { return !this.#inTx; }

  begin(tx: TransactionInfo): void {
    this.#inTx = true;
    const last = this.#pending?.commitLsn ?? this.#durable.commitLsn;
    // Written before (the server resends from the slot's confirmed position): skip it whole.
    this.#skipTx = tx.commitLsn <= last;
    if (this.#skipTx) this.stats.skippedTransactions++;
    this.#tx = tx;
    this.#txChanges = 0;
  }

  change(change: RowChange): void | Promise<void> {
    if (this.#skipTx || !this.#tx) return;
    if (change.kind === 'message' && this.#skipPrefixes.has(change.prefix)) return;
    this.#queue(this.#txChanges === 0 ? lineHead(this.#tx) + changeJson(change) : `,${changeJson(change)}`);
    this.#txChanges++;
    this.stats.changes++;
    if (this.#chunkBytes >= SPILL_TO_FILE_BYTES && this.#output.isFile) return this.#appendQueued();
  }

  commit(info: CommitInfo): void | Promise<void> {
    this.#inTx = false;
    if (this.#skipTx) { this.#skipTx = false; this.#tx = undefined; return; }
    if (this.#txChanges > 0) {
      this.#queue(lineTail(info));
      this.stats.lines++;
    }
    this.#tx = undefined;
    if (this.#pending === undefined) this.#batchStarted = Date.now();
    this.#pending = { commitLsn: info.commitLsn, endLsn: info.endLsn, commitTime: formatCommitTime(info.commitTime) };
    this.#pendingTransactions++;
    if (this.#pendingTransactions >= this.#options.batchMaxTransactions || Date.now() - this.#batchStarted >= this.#options.batchMaxAgeMs) {
      return this.commitPending();
    }
  }

  /** Lines first (appended, fsynced), then the position: never the other way round. */
  async commitPending(): Promise<void> {
    const pending = this.#pending;
    if (pending === undefined || this.#inTx) return;
    this.#committing = true;
    try {
      await this.#appendQueued();
      await this.#output.sync();
      await this.#options.state.setPosition(pending, pending.commitTime);
      this.#durable = pending;
      this.#durableSize = this.#output.size;
      this.#appended = false;
      this.stats.transactions += this.#pendingTransactions;
      this.#pending = undefined;
      this.#pendingTransactions = 0;
    } finally {
      this.#committing = false;
    }
  }

  async rollback(): Promise<void> {
    this.#chunks = [];
    this.#chunkBytes = 0;
    this.#pending = undefined;
    this.#pendingTransactions = 0;
    this.#inTx = false;
    this.#skipTx = false;
    this.#tx = undefined;
    if (this.#appended && this.#output.isFile) await this.#output.truncate(this.#durableSize);
    this.#appended = false;
  }

  async close(): Promise<void> {
    await this.#output.close();
  }

  #queue(text: string): void {
    this.#chunks.push(text);
    this.#chunkBytes += text.length;
  }

  async #appendQueued(): Promise<void> {
    if (this.#chunks.length === 0) return;
    const text = this.#chunks.join('');
    this.#chunks = [];
    this.#chunkBytes = 0;
    this.#appended = true;
    await this.#output.append(text);
  }
}
