/**
 * The one place pgtide opens a postgres.js client. Every site passes its
 * connection string and the role the connection plays; this module turns the
 * libpq meaning of the string (conninfo.ts) into postgres.js options, so TLS,
 * host, defaults and environment fallbacks are the same for every connection,
 * the walsender included. The site keeps its own pool size, timeouts,
 * fetch_types and session settings (`site`).
 *
 * Nothing is handed to postgres.js as a URL: it would read the URL and the PG*
 * variables again with rules of its own (sslrootcert ignored, no key=value form).
 *
 * TLS, as libpq (https://www.postgresql.org/docs/current/libpq-ssl.html):
 * - disable: plain TCP.
 * - allow, prefer (the default): TLS when the server offers it, else plain; no
 *   verification. postgres.js cannot try plain first, so allow behaves as prefer.
 * - require: TLS, no verification, unless a root certificate is available
 *   (sslrootcert, or ~/.postgresql/root.crt): then as verify-ca, as libpq does.
 * - verify-ca: the chain must lead to sslrootcert.
 * - verify-full: verify-ca, and the host of the connection string (a DNS name
 *   or an IP address, matched against the certificate's SANs) must be the
 *   certificate's. The host is bound here, not left to Node: for an IP host
 *   postgres.js passes no servername, and Node then checks against "localhost".
 * - sslrootcert=system: the platform's roots (Node's store, NODE_EXTRA_CA_CERTS).
 * Over a Unix socket TLS is never used, as in libpq.
 */
import postgres from 'postgres';
import tls from 'node:tls';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { parseConninfo, type Conninfo } from './conninfo.js';
import { BoundedConnector } from './bounded.js';

/** What a connection is for; names it in pg_stat_activity when the site gives no name. */
export type PgRole = 'replication' | 'apply' | 'copy' | 'catalog' | 'admin';

export type PgOptions = postgres.Options<Record<string, postgres.PostgresType>>;

/** A site's own settings. Where and how to connect come from the connection string only. */
export type SiteOptions = Omit<PgOptions, 'host' | 'hostname' | 'port' | 'path' | 'database' | 'db' | 'user' | 'username' | 'pass' | 'password' | 'ssl'>;

type TlsSetting = PgOptions['ssl'];

function readPem(file: string, parameter: string): Buffer {
  let content: Buffer;
  try {
    content = readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`the ${parameter} file "${file}" cannot be read (${code}). Fix the path given as ${parameter} in the connection string (or the PG${parameter.toUpperCase()} environment variable).`);
  }
  // Node skips a CA file without a PEM certificate in it silently; verification would then fail later with a misleading message.
  if (parameter !== 'sslkey' && !content.includes('-----BEGIN CERTIFICATE-----')) {
    throw new ConfigError(`the TLS files of the connection string (sslrootcert, sslcert, sslkey) are not usable: the ${parameter} file "${file}" holds no PEM certificate (-----BEGIN CERTIFICATE-----).`);
  }
  return content;
}

function defaultFile(name: string): string | undefined {
  const file = path.join(homedir(), '.postgresql', name);
  return existsSync(file) ? file : undefined;
}

/** The postgres.js `ssl` setting for a parsed connection string. */
export function tlsSetting(info: Conninfo): TlsSetting {
  if (info.sslmode === 'disable' || info.host.startsWith('/')) return false;
  const mode = info.sslmode;
  const required = mode === 'require' || mode === 'verify-ca' || mode === 'verify-full';
  // Client certificates: the default files only when TLS is required, because a certificate
  // turns postgres.js's "prefer" (fall back to plain text) into "require".
  const certFile = info.sslcert ?? (required ? defaultFile('postgresql.crt') : undefined);
  const keyFile = info.sslkey ?? (required && certFile ? defaultFile('postgresql.key') : undefined);
  if (certFile && !keyFile) throw new ConfigError(`sslcert is set but sslkey is not: give the client certificate's private key as sslkey in the connection string.`);
  const client = certFile && keyFile ? { cert: readPem(certFile, 'sslcert'), key: readPem(keyFile, 'sslkey') } : {};

  const rootFile = info.sslrootcert ?? (required ? defaultFile('root.crt') : undefined);
  const verify = mode === 'verify-ca' || mode === 'verify-full' || (mode === 'require' && rootFile !== undefined);
  if (!verify) {
    if (!certFile) return mode === 'require' ? 'require' : 'prefer';
    return validated({ ...client, rejectUnauthorized: false });
  }
  if (rootFile === undefined) {
    throw new ConfigError(`sslmode=${mode} verifies the server's certificate, but no CA certificate was given: set sslrootcert=<file of the CA that signed the server certificate> (or sslrootcert=system for the system's trusted roots) in the connection string. ~/.postgresql/root.crt does not exist.`);
  }
  const ca = rootFile === 'system' ? {} : { ca: readPem(rootFile, 'sslrootcert') };
  const host = info.host;
  const checkServerIdentity = mode === 'verify-full'
    ? (_servername: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(host, cert)
    : () => undefined;
  return validated({ ...client, ...ca, rejectUnauthorized: true, checkServerIdentity });
}

/**
 * Builds the TLS context once here, so a malformed PEM file is a clear error now:
 * inside postgres.js it would be thrown from a socket callback and end the process.
 */
function validated(options: tls.ConnectionOptions): tls.ConnectionOptions {
  try {
    tls.createSecureContext(options);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(`the TLS files of the connection string (sslrootcert, sslcert, sslkey) are not usable: ${reason}. Check that each holds a PEM certificate or key and that sslkey matches sslcert.`);
  }
  return options;
}

/** postgres.js options for `conninfo` (a libpq connection string or a parsed one) in `role`. */
export function postgresOptions(conninfo: string | Conninfo, role: PgRole, site: SiteOptions = {}): PgOptions {
  const info = typeof conninfo === 'string' ? parseConninfo(conninfo) : conninfo;
  const socketPath = info.host.startsWith('/') ? path.join(info.host, `.s.PGSQL.${info.port}`) : undefined;
  // libpq's precedence: application_name (string, then PGAPPNAME) over the fallback name, which
  // is what a site's own name is.
  const applicationName = info.applicationName ?? site.connection?.application_name ?? info.fallbackApplicationName ?? `pgtide-${role}`;
  // Every client gets bounded sockets (bounded.ts: no reconnect storm when a server behind a
  // proxy closes before answering, backoff between failed attempts) unless its site brings its
  // own connector, to destroy its sockets itself or to set TCP_NODELAY.
  const sockets = (site as { readonly socket?: unknown }).socket === undefined ? new BoundedConnector().options : {};
  return {
    ...sockets,
    ...site,
    host: info.host,
    port: info.port,
    ...(socketPath ? { path: socketPath } : {}),
    database: info.dbname,
    user: info.user,
    ...(info.password !== undefined ? { pass: info.password } : { pass: '' }),
    ssl: tlsSetting(info),
    ...(info.connectTimeout !== undefined ? { connect_timeout: info.connectTimeout } : {}),
    connection: {
      ...site.connection,
      application_name: applicationName,
      ...(info.options !== undefined ? { options: info.options } : {}),
    },
  };
}

/** A postgres.js client for `conninfo` in `role`; see postgresOptions. */
export function openPostgres(conninfo: string | Conninfo, role: PgRole, site: SiteOptions = {}): postgres.Sql {
  return postgres(postgresOptions(conninfo, role, site));
}
