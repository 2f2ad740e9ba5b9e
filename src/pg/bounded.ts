/**
 * Connection-level rules that postgres.js 3.4.9 does not keep by itself,
 * in one place (see ARCHITECTURE.md, "Bounded waits"):
 *
 * 1. A server that accepts the TCP connection and closes it cleanly (FIN)
 *    before answering the startup message — a pooler or load balancer whose
 *    backend is down — made postgres.js reconnect at once, forever: its
 *    `closed()` re-runs `connect()` for the query that opened the connection
 *    (`initial`) without delay and without failing it. Measured through a
 *    proxy in that state: 690 connection attempts a second, and the query
 *    never settled. The socket below turns such a close into a socket error,
 *    so the query fails (and the caller's backoff applies), and it delays
 *    every attempt after a failed one with exponential backoff and jitter.
 * 2. postgres.js's `end({ timeout })` only *ends* a socket (FIN). A
 *    replication connection whose stream was paused for backpressure then
 *    never closes: the walsender sits in ClientWrite holding the slot. The
 *    factory keeps the sockets it made, so the owner can destroy them.
 * 3. A query issued right after a connection was reset may be queued on the
 *    dying connection and never settle. Clean-up steps therefore run under a
 *    time limit (`settleWithin`), and nothing is sent on a connection known
 *    to be closed (the callers' fences).
 */
import net from 'node:net';

/** The part of postgres.js's parsed options its `socket` factory receives. */
interface SocketTarget {
  readonly host: readonly string[];
  readonly port: readonly number[];
  readonly path?: string | false | undefined;
}

export interface BoundedConnectorOptions {
  /** Nagle off (small request/response exchanges, e.g. COPY chunks on loopback). */
  readonly noDelay?: boolean;
  /** First delay after a failed attempt, ms. */
  readonly baseDelayMs?: number;
  /** Longest delay between attempts, ms. */
  readonly maxDelayMs?: number;
}

/** Thrown into postgres.js (as a socket error) when the server closed before saying anything. */
export class ClosedBeforeStartupError extends Error {
  readonly code = 'ECONNRESET';
  constructor(host: string) {
    super(`the server at ${host} closed the connection before answering the startup message (is it down behind a proxy or pooler?)`);
    this.name = 'ClosedBeforeStartupError';
  }
}

/**
 * A socket factory for postgres.js's `socket` option, shared by one pool.
 * Spread `connector.options` into the postgres() options.
 */
export class BoundedConnector {
  readonly #sockets = new Set<net.Socket>();
  readonly #noDelay: boolean;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  /** Consecutive attempts that ended before the server sent a byte. */
  #failures = 0;
  #hostIndex = 0;
  #destroyed = false;

  constructor(options: BoundedConnectorOptions = {}) {
    this.#noDelay = options.noDelay ?? false;
    this.#baseDelayMs = options.baseDelayMs ?? 250;
    this.#maxDelayMs = options.maxDelayMs ?? 30_000;
  }

  /**
   * Options for postgres(): the socket factory (a documented option, missing
   * from its typings) and a backoff for its own reconnects.
   */
  get options(): { readonly socket: (target: SocketTarget) => Promise<net.Socket>; readonly backoff: (retries: number) => number } {
    return {
      socket: (target) => this.#connect(target),
      // Seconds; postgres.js counts its retries only after errors, which rule 1 makes sure happen.
      backoff: (retries) => Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** Math.max(0, retries - 1)) / 1000 * (0.5 + Math.random() / 2),
    };
  }

  /** Consecutive failed attempts so far (0 once a server answered). */
  get failures(): number { return this.#failures; }

  /**
   * Destroys the sockets open now: their queries fail at once and the pool
   * connects afresh on its next query. For a connection that stopped
   * answering without an error (a blackholed path), which no time-out of
   * postgres.js would end.
   */
  resetAll(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  /** Destroys every socket this connector made, and any made later. */
  destroyAll(): void {
    this.#destroyed = true;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  async #connect(target: SocketTarget): Promise<net.Socket> {
    if (this.#failures > 0) {
      const delay = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (this.#failures - 1)) * (0.5 + Math.random() / 2);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    const hosts = target.host.length > 0 ? target.host : ['localhost'];
    const index = this.#hostIndex++ % hosts.length;
    const host = hosts[index]!;
    const port = target.port[index] ?? target.port[0] ?? 5432;
    const socket = target.path ? net.connect({ path: target.path }) : net.connect({ host, port, noDelay: this.#noDelay });
    if (this.#destroyed) {
      // The owner gave up on this pool: whatever is still queued fails instead of waiting.
      // Destroyed only once postgres.js listens to the socket (it does right after this returns).
      setImmediate(() => socket.destroy(new ClosedBeforeStartupError(`${host}:${port}`)));
      return socket;
    }
    this.#sockets.add(socket);
    let answered = false;
    socket.on('data', () => {
      if (!answered) { answered = true; this.#failures = 0; }
    });
    socket.on('error', (error) => {
      if (!answered && !(error instanceof ClosedBeforeStartupError)) this.#failures++;
    });
    socket.on('end', () => {
      if (answered) return;
      this.#failures++;
      // A clean close before the server said anything: make it an error, so postgres.js fails
      // the query that opened the connection instead of reconnecting for it at once (rule 1).
      socket.destroy(new ClosedBeforeStartupError(target.path ? String(target.path) : `${host}:${port}`));
    });
    socket.on('close', () => this.#sockets.delete(socket));
    return socket;
  }
}

/**
 * Waits for `promise` at most `ms`; never rejects. For clean-up steps whose
 * outcome does not matter but whose hanging would stop a reconnect.
 */
export async function settleWithin(promise: Promise<unknown>, ms: number): Promise<'settled' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms); });
  try {
    return await Promise.race([promise.then(() => 'settled' as const, () => 'settled' as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Default time limit for one clean-up step (a ROLLBACK, an origin reset, ending a pool). */
export const CLEANUP_MS = 3_000;
