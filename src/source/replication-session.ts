/**
 * One START_REPLICATION session: CopyData in, standby status updates out.
 *
 * Acknowledgement invariant: the flush position we report is a promise to
 * the server that everything before it is durably on the target, so the server
 * may recycle that WAL and will never send it again. It is therefore only ever
 * (a) the end LSN of a source transaction whose target transaction committed,
 * or (b) a keepalive's WAL end, and (b) only when nothing is received but not
 * yet applied. The write position may run ahead (it is informational).
 *
 * https://www.postgresql.org/docs/current/protocol-replication.html#PROTOCOL-REPLICATION-STANDBY-STATUS-UPDATE
 */
import type { Duplex } from 'node:stream';
import { decodeReplicationFrame, encodeStandbyStatusUpdate } from '../protocol/replication-frames.js';
import { dateToPgTimestamp } from '../protocol/messages.js';
import { maxLsn, ZERO_LSN, type Lsn } from '../core/lsn.js';
import { PgtideError } from '../core/errors.js';

export interface AckState {
  /** End LSN of the last source transaction durably committed on the target. */
  readonly durableLsn: Lsn;
  /** True when nothing received is still waiting to be applied or committed. */
  readonly quiescent: boolean;
}

export interface SessionOptions {
  readonly statusIntervalMs: number;
  readonly receiveTimeoutMs: number;
  readonly ackState: () => AckState;
  /** Stop reading from the socket when this many payloads wait (backpressure). */
  readonly highWaterMark?: number;
  /**
   * Records a keepalive-based flush position (rule b) on the target before it
   * is sent, so the slot guardian can tell a slot confirmed by us from one
   * moved by someone else. Without it, such positions are sent unrecorded.
   */
  readonly persistAck?: (lsn: Lsn) => Promise<void>;
}

export class ReplicationSession {
  readonly #stream: Duplex;
  readonly #options: SessionOptions;
  readonly #queue: Uint8Array[] = [];
  #queueHead = 0;
  #waiter: (() => void) | undefined;
  #ended = false;
  #error: unknown;
  #lastReceivedAt = Date.now();
  #received: Lsn = ZERO_LSN;
  #serverWalEnd: Lsn = ZERO_LSN;
  #keepaliveLsn: Lsn = ZERO_LSN;
  #confirmed: Lsn = ZERO_LSN;
  /** Highest keepalive position validated (quiescent) and recorded on the target: sendable. */
  #persistedAck: Lsn = ZERO_LSN;
  #persisting = false;
  #lastPersistAt = 0;
  #paused = false;
  readonly #timer: NodeJS.Timeout;
  readonly #highWaterMark: number;

  constructor(stream: Duplex, options: SessionOptions, startLsn: Lsn) {
    this.#stream = stream;
    this.#options = options;
    this.#highWaterMark = options.highWaterMark ?? 4096;
    this.#received = startLsn;
    this.#confirmed = startLsn;
    // Flowing mode keeps one CopyData message per chunk (an async iterator would concatenate them).
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('error', (error: unknown) => this.#finish(error));
    stream.on('end', () => this.#finish(new PgtideError('REPLICATION_STREAM_LOST', 'the source ended the replication stream', { retryable: true })));
    stream.on('close', () => this.#finish(new PgtideError('REPLICATION_STREAM_LOST', 'the replication connection closed', { retryable: true })));
    const tick = Math.max(100, Math.min(options.statusIntervalMs, options.receiveTimeoutMs / 4));
    this.#timer = setInterval(() => this.#onTimer(), tick);
    this.#timer.unref();
  }

  /** Highest WAL end the server has reported: with `confirmed`, gives the lag in bytes. */
  get serverWalEnd(): Lsn { return this.#serverWalEnd; }
  get confirmedLsn(): Lsn { return this.#confirmed; }

  /**
   * Resolves with the next payloads (pgoutput messages), or an empty array
   * when none is waiting: the caller treats that as "stream idle" and flushes.
   */
  async next(waitMs: number): Promise<readonly Uint8Array[]> {
    if (this.#queueHead >= this.#queue.length && !this.#ended) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { this.#waiter = undefined; resolve(); }, waitMs);
        this.#waiter = () => { clearTimeout(timer); this.#waiter = undefined; resolve(); };
      });
    }
    if (this.#queueHead < this.#queue.length) {
      const out = this.#queue.slice(this.#queueHead);
      this.#queue.length = 0;
      this.#queueHead = 0;
      if (this.#paused) { this.#paused = false; this.#stream.resume(); }
      return out;
    }
    if (this.#ended) throw this.#error;
    return [];
  }

  /** Sends a status update now; `reply` asks the server to answer with a keepalive. */
  sendStatus(reply = false, allowKeepalive = true): void {
    if (this.#ended) return;
    const ack = this.#options.ackState();
    let flushed = maxLsn(this.#confirmed, ack.durableLsn);
    if (allowKeepalive && ack.quiescent && this.#queueHead >= this.#queue.length) {
      if (!this.#options.persistAck) flushed = maxLsn(flushed, this.#keepaliveLsn);
      else if (this.#keepaliveLsn > maxLsn(flushed, this.#persistedAck)) this.#persist(this.#keepaliveLsn);
    }
    // A position validated while quiescent stays true (what preceded it is applied), so it may be
    // sent once recorded, even if more has arrived since.
    if (allowKeepalive) flushed = maxLsn(flushed, this.#persistedAck);
    this.#confirmed = flushed;
    const written = maxLsn(this.#received, flushed);
    this.#stream.write(encodeStandbyStatusUpdate(written, flushed, flushed, dateToPgTimestamp(Date.now()), reply));
  }

  /**
   * Ends CopyBoth after a final status update that reports only what is
   * durable: close() also runs on failure paths, where "nothing pending" may
   * only mean that pending work was just thrown away.
   */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    if (!this.#ended) {
      try { this.sendStatus(false, false); } catch { /* the socket may already be gone */ }
    }
    this.#ended = true;
    this.#error ??= new PgtideError('SHUTDOWN', 'replication session closed');
    await new Promise<void>((resolve) => {
      if (this.#stream.destroyed) return resolve();
      this.#stream.once('close', () => resolve());
      // The server answers our CopyDone only after the CopyData it already sent. A stream paused
      // for backpressure (the loop stopped consuming, usually because the attempt failed) never
      // reads that far, so the close waited out the 2 s below on every retry. Nothing received
      // from here on is used: the next attempt restarts from the durable position.
      this.#stream.removeAllListeners('data');
      this.#stream.on('data', () => {});
      this.#paused = false;
      this.#stream.resume();
      this.#stream.end();
      setTimeout(() => { this.#stream.destroy(); resolve(); }, 2000).unref();
    });
  }

  /** At most one write per status interval; the acknowledgement follows as soon as it is recorded. */
  #persist(lsn: Lsn): void {
    const persistAck = this.#options.persistAck;
    if (!persistAck || this.#persisting || Date.now() - this.#lastPersistAt < this.#options.statusIntervalMs) return;
    this.#persisting = true;
    this.#lastPersistAt = Date.now();
    persistAck(lsn).then(
      () => {
        this.#persisting = false;
        this.#persistedAck = maxLsn(this.#persistedAck, lsn);
        try { this.sendStatus(); } catch (error) { this.#finish(error); }
      },
      // Not recorded, not sent; the engine logs the failure and the next interval tries again.
      () => { this.#persisting = false; },
    );
  }

  #onData(chunk: Buffer): void {
    this.#lastReceivedAt = Date.now();
    const frame = decodeReplicationFrame(chunk);
    if (frame.tag === 'keepalive') {
      this.#serverWalEnd = maxLsn(this.#serverWalEnd, frame.walEnd);
      this.#keepaliveLsn = maxLsn(this.#keepaliveLsn, frame.walEnd);
      if (frame.replyRequested) this.sendStatus();
      return;
    }
    this.#serverWalEnd = maxLsn(this.#serverWalEnd, frame.walEnd);
    if (frame.walStart > this.#received) this.#received = frame.walStart;
    this.#queue.push(frame.payload);
    if (!this.#paused && this.#queue.length - this.#queueHead >= this.#highWaterMark) {
      this.#paused = true;
      this.#stream.pause();
    }
    this.#waiter?.();
  }

  #onTimer(): void {
    if (this.#ended) return;
    if (Date.now() - this.#lastReceivedAt > this.#options.receiveTimeoutMs) {
      // A half-open TCP connection delivers nothing, not even keepalives: treat silence as loss.
      this.#finish(new PgtideError('REPLICATION_STREAM_LOST', `nothing received from the source for ${Math.round(this.#options.receiveTimeoutMs / 1000)} s; reconnecting`, { retryable: true }));
      this.#stream.destroy();
      return;
    }
    try { this.sendStatus(); } catch (error) { this.#finish(error); }
  }

  #finish(error: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    clearInterval(this.#timer);
    this.#waiter?.();
  }
}
