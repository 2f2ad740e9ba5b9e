/**
 * Connections of the initial copy: one session per worker and side, with
 * TCP_NODELAY and the settings that make COPY text read the same everywhere.
 */
import postgres from 'postgres';
import net from 'node:net';
import { openPostgres, type SiteOptions } from './connect.js';
import { TEXT_FORMAT_SETTINGS } from './text-format.js';

/** A copy can run for hours: server-side timeouts configured for interactive users must not end it. */
export function sessionSettings(serverVersion: number, role: 'source' | 'target'): Record<string, string> {
  const settings: Record<string, string> = {
    ...TEXT_FORMAT_SETTINGS,
    application_name: 'pgtide-copy',
    statement_timeout: '0',
    idle_in_transaction_session_timeout: '0',
    idle_session_timeout: '0',
  };
  if (serverVersion >= 170000) settings.transaction_timeout = '0';
  if (role === 'target') {
    // As PostgreSQL's table sync: no user triggers, no FK checks (the referenced
    // table may not be copied yet), no waiting for WAL flush on each commit.
    settings.session_replication_role = 'replica';
    settings.synchronous_commit = 'off';
  }
  return settings;
}

const CONNECT_TIMEOUT_S = 30;

/** What postgres.js passes to a `socket` factory (its parsed connection options). */
interface SocketTarget {
  readonly host: readonly string[];
  readonly port: readonly number[];
  readonly path?: string | false;
}

/**
 * A connected socket with TCP_NODELAY, as libpq always sets it. postgres.js
 * leaves Nagle's algorithm on, so the small CopyDone that ends each COPY FROM
 * waits for the ACK of the data before it, which the server delays: ~90 ms per
 * COPY on loopback, against ~18 ms with NODELAY (measured). Per table and per
 * range, that adds up. Only the first host of a multi-host URL is used.
 */
function noDelaySocket(target: SocketTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = target.path
      ? net.connect({ path: target.path })
      : net.connect({ host: target.host[0] ?? 'localhost', port: target.port[0] ?? 5432, noDelay: true });
    // postgres.js starts its own connect timer only once it has the socket.
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error(`connect timeout after ${CONNECT_TIMEOUT_S} s`), { code: 'CONNECT_TIMEOUT' })), CONNECT_TIMEOUT_S * 1000);
    const onError = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      // From here on postgres.js listens for errors itself.
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

export function copyConnection(url: string, connection: Record<string, string>): postgres.Sql {
  const options = {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    connect_timeout: CONNECT_TIMEOUT_S,
    // The type lookup postgres.js runs on connect is an unobserved promise: cut
    // short by #fail it becomes an unhandled rejection. Arrays travel as JSON here.
    fetch_types: false,
    onnotice: () => {},
    connection,
    // A documented option (README, "Custom socket") missing from the typings.
    socket: noDelaySocket,
  };
  return openPostgres(url, 'copy', options as SiteOptions);
}
