/**
 * A loopback TCP proxy in front of one server, for fault injection in tests
 * and the chaos suite. pgtide connects to the proxy's port; the proxy can
 * forward, cut every open connection (RST or FIN), blackhole them (sockets
 * stay open, nothing is forwarded any more, as a dead network path does), and
 * play a server that is down (new connections refused, reset, closed or left
 * unanswered). It counts connection attempts so tests can bound reconnect
 * rates.
 */
import net from 'node:net';
import { PgtideError } from '../core/errors.js';

/** What the proxy does with a new connection. */
export type ProxyMode =
  | { readonly kind: 'forward' }
  /** Accept, then close at once with FIN: a pooler or load balancer whose backend is down. */
  | { readonly kind: 'close' }
  /** Accept, then reset at once (RST). */
  | { readonly kind: 'reset' }
  /** Accept and never answer. */
  | { readonly kind: 'blackhole' }
  /** Stop listening: connecting fails with ECONNREFUSED. Attempts are not counted (nothing accepts them). */
  | { readonly kind: 'refuse' };

interface Link {
  readonly client: net.Socket;
  readonly server: net.Socket | undefined;
  blackholed: boolean;
}

export class TcpProxy {
  readonly port: number;
  readonly #targetHost: string;
  readonly #targetPort: number;
  readonly #links = new Set<Link>();
  readonly #accepted = new Set<net.Socket>();
  /** Accept times (ms since epoch) of every connection, whatever the mode. */
  readonly #attempts: number[] = [];
  #server: net.Server | undefined;
  #mode: ProxyMode = { kind: 'forward' };

  private constructor(port: number, targetHost: string, targetPort: number) {
    this.port = port;
    this.#targetHost = targetHost;
    this.#targetPort = targetPort;
  }

  /** Listens on 127.0.0.1 on a free port and forwards to targetHost:targetPort. */
  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const probe = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const address = probe.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const proxy = new TcpProxy(port, targetHost, targetPort);
    await proxy.#listen();
    return proxy;
  }

  get mode(): ProxyMode { return this.#mode; }

  /** Connections currently open through the proxy. */
  get openConnections(): number { return this.#links.size; }

  /** Connections accepted since `sinceMs` (epoch ms). */
  attemptsSince(sinceMs: number): number {
    let n = 0;
    for (let i = this.#attempts.length - 1; i >= 0 && this.#attempts[i]! >= sinceMs; i--) n++;
    return n;
  }

  get totalAttempts(): number { return this.#attempts.length; }

  /** Changes what happens to new connections; open ones are left as they are. */
  async setMode(mode: ProxyMode): Promise<void> {
    this.#mode = mode;
    if (mode.kind === 'refuse') await this.#unlisten();
    else await this.#listen();
  }

  /** Resets (RST) every open connection, both legs. Returns how many were cut. */
  resetAll(): number {
    return this.#cut((s) => s.resetAndDestroy());
  }

  /** Closes every open connection with FIN, both legs. */
  finAll(): number {
    return this.#cut((s) => s.end());
  }

  /**
   * Blackholes every open connection: the sockets stay open, whatever either
   * side sends is read and dropped. Only cutting them (or the peer's own
   * timeouts) ends them; new connections follow the mode.
   */
  blackholeAll(): number {
    let n = 0;
    for (const link of this.#links) {
      if (link.blackholed) continue;
      link.blackholed = true;
      // A paused reader would push back on the sender; a dead path swallows instead.
      link.client.resume();
      link.server?.resume();
      n++;
    }
    return n;
  }

  /** Cuts every connection and stops listening. */
  async close(): Promise<void> {
    this.resetAll();
    // server.close() calls back only once every accepted socket is gone, including those no
    // link holds (a client ended by the `close` mode that never closed its side).
    for (const socket of this.#accepted) socket.destroy();
    await this.#unlisten();
  }

  #cut(how: (socket: net.Socket) => void): number {
    const links = [...this.#links];
    this.#links.clear();
    for (const link of links) {
      how(link.client);
      if (link.server) how(link.server);
    }
    return links.length;
  }

  async #listen(): Promise<void> {
    if (this.#server) return;
    const server = net.createServer({ allowHalfOpen: false }, (client) => this.#accept(client));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => { server.off('error', reject); resolve(); });
    }).catch((error: unknown) => {
      this.#server = undefined;
      throw new PgtideError('HARNESS_FAILED', `the TCP proxy could not listen on 127.0.0.1:${this.port} again: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    });
  }

  async #unlisten(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    // close() only stops accepting; open connections are the caller's business.
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    this.#attempts.push(Date.now());
    if (this.#attempts.length > 100_000) this.#attempts.splice(0, 50_000);
    this.#accepted.add(client);
    client.on('close', () => this.#accepted.delete(client));
    client.on('error', () => {});
    const mode = this.#mode;
    switch (mode.kind) {
      case 'close': client.end(); return;
      case 'reset': client.resetAndDestroy(); return;
      case 'refuse': client.resetAndDestroy(); return;
      case 'blackhole': {
        const link: Link = { client, server: undefined, blackholed: true };
        this.#links.add(link);
        client.on('data', () => {});
        client.on('close', () => this.#links.delete(link));
        return;
      }
      case 'forward': break;
    }
    const server = net.connect(this.#targetPort, this.#targetHost);
    server.on('error', () => {});
    const link: Link = { client, server, blackholed: false };
    this.#links.add(link);
    // Hand-made pipes, so that a blackholed link keeps reading and drops what it reads.
    const relay = (from: net.Socket, to: net.Socket) => {
      from.on('data', (chunk: Buffer) => {
        if (link.blackholed) return;
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
    };
    relay(client, server);
    relay(server, client);
    const drop = (peer: net.Socket, how: 'end' | 'reset' | 'destroy') => {
      // A blackholed link stays until cut: its other leg is still open.
      if (link.blackholed) return;
      if (how === 'end') {
        // Half-close: pass the FIN on, and keep reading the peer (it may have been paused for
        // backpressure towards the side that is going away).
        peer.end();
        peer.resume();
        return;
      }
      this.#links.delete(link);
      if (how === 'reset') peer.resetAndDestroy(); else peer.destroy();
    };
    client.on('end', () => drop(server, 'end'));
    server.on('end', () => drop(client, 'end'));
    client.on('error', () => drop(server, 'reset'));
    server.on('error', () => drop(client, 'reset'));
    // Once one leg is fully closed, so is the other, as a host that forgot the connection would
    // answer with RST: a leg left open (and perhaps paused) would keep a walsender writing for ever.
    client.on('close', () => drop(server, 'destroy'));
    server.on('close', () => drop(client, 'destroy'));
  }
}
