/**
 * The apply writer's knowledge that its one connection is gone (postgres.js
 * calls `onclose`), and the bound that knowledge puts on waits.
 */
import { PgtideError } from '../../core/errors.js';
import { CLEANUP_MS } from '../../pg/bounded.js';

/**
 * Whether the writer's one connection is gone. Once it is, a wait on
 * statements already handed to postgres.js is bounded (`bound`): postgres.js
 * 3.4.9 replays statements still queued in its pool on a new session after a
 * reset (src/pg/bounded.ts, rule 3), where they may never settle, and a
 * writer waiting on them would wait for the stall watchdog (minutes). Giving
 * up is safe: the next writer re-reads the durable position from the target.
 */
export class Fence {
  #closed = false;
  readonly #waiters = new Set<() => void>();

  get closed(): boolean { return this.#closed; }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }

  /**
   * `promise`, unless the connection closes first and it has not settled
   * `graceMs` later: then a retryable CONNECTION_FAILED. The grace lets the
   * statements the closing connection itself rejects report their own error.
   */
  async bound<T>(promise: Promise<T>, graceMs = CLEANUP_MS): Promise<T> {
    let wake: (() => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    const lost = new Promise<never>((_, reject) => {
      const expire = (): void => {
        timer = setTimeout(() => reject(new PgtideError('CONNECTION_FAILED', 'the target connection of the apply session was lost and its statements did not settle; reconnecting', { retryable: true })), graceMs);
      };
      if (this.#closed) expire();
      else { wake = expire; this.#waiters.add(wake); }
    });
    try {
      return await Promise.race([promise, lost]);
    } finally {
      if (wake) this.#waiters.delete(wake);
      clearTimeout(timer);
    }
  }
}
