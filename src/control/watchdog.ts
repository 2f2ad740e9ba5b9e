/**
 * The stall watchdog of a streaming attempt (issue 10, "bounded waits").
 *
 * Every await of the streaming loop that depends on a server (opening the
 * writer, applying received changes, a commit) goes through guard(). When one
 * of them has been waiting for `timeoutMs` with nothing read and nothing
 * applied meanwhile, it is a wait on a connection that will never answer — a
 * reset whose queries postgres.js never settles, a blackholed network path
 * that no TCP error reports — and the guarded await rejects with a retryable
 * STALLED error: the attempt ends and the engine reconnects. The abandoned
 * promise is left to settle (or not) on its own.
 *
 * The loop's wait for the next message is not guarded: a quiet source, or a
 * large transaction left open on it, is not a stall.
 */
import { PgtideError } from '../core/errors.js';

export class StallWatchdog {
  readonly #timeoutMs: number;
  readonly #timer: NodeJS.Timeout;
  readonly #tripped: Promise<never>;
  #trip!: (error: PgtideError) => void;
  #lastActivity = Date.now();
  /** What the guarded awaits in progress wait for (usually one). */
  readonly #waiting = new Map<number, string>();
  #nextId = 0;
  #error: PgtideError | undefined;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
    this.#tripped = new Promise<never>((_, reject) => { this.#trip = reject; });
    this.#tripped.catch(() => {});
    this.#timer = setInterval(() => this.#check(), Math.max(100, Math.min(1000, timeoutMs / 4)));
    this.#timer.unref();
  }

  /** Set once the watchdog fired. */
  get error(): PgtideError | undefined { return this.#error; }

  /** Something was read or applied. */
  activity(): void {
    this.#lastActivity = Date.now();
  }

  /** `promise`, unless the watchdog fires first; `what` names the wait in the message. */
  async guard<T>(promise: Promise<T>, what: string): Promise<T> {
    if (this.#error) {
      promise.catch(() => {});
      throw this.#error;
    }
    const id = this.#nextId++;
    if (this.#waiting.size === 0) this.#lastActivity = Date.now();
    this.#waiting.set(id, what);
    try {
      return await Promise.race([promise, this.#tripped]);
    } finally {
      this.#waiting.delete(id);
      this.#lastActivity = Date.now();
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #check(): void {
    if (this.#error || this.#waiting.size === 0) return;
    const idle = Date.now() - this.#lastActivity;
    if (idle < this.#timeoutMs) return;
    const what = [...this.#waiting.values()].join(', ');
    this.#error = new PgtideError('STALLED', `watchdog: waited ${Math.round(idle / 1000)} s for ${what} with nothing read or applied meanwhile; dropping the connections and reconnecting (stallTimeoutMs is ${this.#timeoutMs} ms)`, { retryable: true });
    this.stop();
    this.#trip(this.#error);
  }
}
