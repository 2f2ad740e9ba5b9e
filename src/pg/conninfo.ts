/**
 * libpq connection strings, read as libpq reads them, so that a string that
 * works with psql works with pgtide and means the same thing.
 *
 * Both forms are accepted:
 * - URLs `postgres[ql]://[user[:password]@][host][:port][/dbname][?param=value&...]`,
 *   percent-decoded; https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS
 * - key=value `host=db1 port=5432 password='it\'s'`, values single-quoted or
 *   with backslash escapes; #LIBPQ-CONNSTRING-KEYWORD-VALUE
 * A parameter missing from the string falls back to its PG* environment
 * variable, then to libpq's default (#LIBPQ-ENVARS). Anything pgtide does not
 * implement is refused by name rather than ignored: a silently dropped
 * `sslrootcert` is how verification got lost before.
 *
 * Errors never quote a value that could be a password: only parameter names
 * and the values of enumerations (sslmode) appear in them.
 */
import { userInfo } from 'node:os';
import { ConfigError, rememberSecret } from '../core/errors.js';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

export interface Conninfo {
  /** A DNS name, an IP address, or (starting with `/`) a Unix-socket directory. */
  readonly host: string;
  readonly port: number;
  readonly dbname: string;
  readonly user: string;
  readonly password: string | undefined;
  readonly sslmode: SslMode;
  /** A file path, or `system` for the platform's trusted roots. */
  readonly sslrootcert: string | undefined;
  readonly sslcert: string | undefined;
  readonly sslkey: string | undefined;
  readonly applicationName: string | undefined;
  readonly fallbackApplicationName: string | undefined;
  /** Seconds; undefined (also for connect_timeout=0) = the connection site's own limit. */
  readonly connectTimeout: number | undefined;
  /** Command-line options sent at start-up (`-c name=value ...`). */
  readonly options: string | undefined;
}

/** The parameters pgtide implements, with the environment variable libpq falls back to. */
const SUPPORTED: Readonly<Record<string, string | undefined>> = {
  host: 'PGHOST',
  port: 'PGPORT',
  dbname: 'PGDATABASE',
  user: 'PGUSER',
  password: 'PGPASSWORD',
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  application_name: 'PGAPPNAME',
  fallback_application_name: undefined,
  connect_timeout: 'PGCONNECT_TIMEOUT',
  options: 'PGOPTIONS',
};

/** libpq parameters pgtide knows but does not implement: refused with this name, not as a typo. */
const NOT_IMPLEMENTED = new Set([
  'hostaddr', 'passfile', 'require_auth', 'channel_binding', 'client_encoding', 'keepalives', 'keepalives_idle',
  'keepalives_interval', 'keepalives_count', 'tcp_user_timeout', 'replication', 'gssencmode', 'sslnegotiation',
  'sslcompression', 'sslpassword', 'sslcertmode', 'sslcrl', 'sslcrldir', 'sslsni', 'requirepeer', 'ssl_min_protocol_version',
  'ssl_max_protocol_version', 'krbsrvname', 'gsslib', 'gssdelegation', 'service', 'target_session_attrs', 'load_balance_hosts',
  'requiressl', 'min_protocol_version', 'max_protocol_version', 'oauth_issuer', 'oauth_client_id', 'oauth_client_secret', 'oauth_scope',
]);

/** A name is quoted in an error only if it cannot be a stray password. */
function nameForMessage(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]{0,40}$/.test(name) ? `"${name}"` : 'a parameter name that is not a word';
}

function fail(what: string, detail: string): never {
  throw new ConfigError(`${what}: ${detail}`);
}

function percentDecode(text: string, field: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return fail('connection URL', `the ${field} has an invalid percent-encoding (write %25 for a literal %)`);
  }
}

/** libpq's URI form. The password is everything between `user:` and the last `@` of the authority. */
function parseUrl(text: string): Map<string, string> {
  const params = new Map<string, string>();
  const rest = text.slice(text.indexOf('://') + 3);
  const authorityEnd = rest.search(/[/?]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const tail = authorityEnd < 0 ? '' : rest.slice(authorityEnd);
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (user !== '') params.set('user', percentDecode(user, 'user name'));
    if (colon >= 0) params.set('password', percentDecode(userinfo.slice(colon + 1), 'password'));
  }
  const hostport = at >= 0 ? authority.slice(at + 1) : authority;
  if (hostport.includes(',')) fail('connection URL', 'lists several hosts; pgtide connects to one server, so give one host');
  let host = hostport;
  let port: string | undefined;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close < 0) fail('connection URL', 'has an IPv6 address without its closing "]"');
    host = hostport.slice(1, close);
    const after = hostport.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) fail('connection URL', 'has text after the IPv6 address that is not :port');
      port = after.slice(1);
    }
  } else {
    const colon = hostport.lastIndexOf(':');
    if (colon >= 0) { host = hostport.slice(0, colon); port = hostport.slice(colon + 1); }
  }
  if (host !== '') params.set('host', percentDecode(host, 'host'));
  if (port !== undefined && port !== '') params.set('port', port);
  const query = tail.indexOf('?');
  const path = query < 0 ? tail : tail.slice(0, query);
  if (path.length > 1) params.set('dbname', percentDecode(path.slice(1), 'database name'));
  if (query >= 0) {
    for (const pair of tail.slice(query + 1).split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq < 0) fail('connection URL', `query parameter ${nameForMessage(pair)} has no "=value"`);
      const name = percentDecode(pair.slice(0, eq), 'parameter name');
      const value = percentDecode(pair.slice(eq + 1), `value of ${name}`);
      // libpq accepts ssl=true in URLs, for JDBC compatibility, as sslmode=require.
      if (name === 'ssl') {
        if (value !== 'true') fail('connection URL', 'ssl accepts only "true" (use sslmode=... for anything else)');
        params.set('sslmode', 'require');
        continue;
      }
      params.set(name, value);
    }
  }
  return params;
}

/** libpq's keyword/value form: `key = value`, value single-quoted ('' not special; \' and \\ escape) or bare with \ escapes. */
function parseKeywordValue(text: string): Map<string, string> {
  const params = new Map<string, string>();
  let i = 0;
  const isSpace = (c: string | undefined) => c !== undefined && /\s/.test(c);
  while (i < text.length) {
    while (isSpace(text[i])) i++;
    if (i >= text.length) break;
    let name = '';
    while (i < text.length && text[i] !== '=' && !isSpace(text[i])) name += text[i++];
    while (isSpace(text[i])) i++;
    if (text[i] !== '=') {
      // A lone word may be a password typed in the wrong place: only a parameter's name is quoted.
      const shown = name in SUPPORTED || NOT_IMPLEMENTED.has(name) ? `"${name}"` : 'a word that is not a parameter name';
      fail('connection string', `${shown} is not followed by "=" (write key=value pairs separated by spaces, or a postgres:// URL)`);
    }
    i++;
    while (isSpace(text[i])) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= text.length) fail('connection string', `the quoted value of ${nameForMessage(name)} has no closing quote`);
        const c = text[i]!;
        if (c === '\\' && i + 1 < text.length) { value += text[i + 1]; i += 2; continue; }
        if (c === "'") { i++; break; }
        value += c;
        i++;
      }
    } else {
      while (i < text.length && !isSpace(text[i])) {
        if (text[i] === '\\' && i + 1 < text.length) { value += text[i + 1]; i += 2; continue; }
        value += text[i++];
      }
    }
    params.set(name, value);
  }
  return params;
}

/** True when `name` is a libpq connection parameter (implemented or not). */
export function isConninfoParameter(name: string): boolean {
  return name in SUPPORTED || NOT_IMPLEMENTED.has(name);
}

/** True for the URL form; anything else is read as key=value, as libpq does. */
export function isConnectionUrl(text: string): boolean {
  return /^\s*postgres(?:ql)?:\/\//i.test(text);
}

/**
 * Parses a connection string and fills in what it leaves out from `env`
 * (PG* variables) and libpq's defaults. Throws ConfigError naming the
 * parameter for anything unknown, unimplemented or out of range.
 */
export function parseConninfo(text: string, env: NodeJS.ProcessEnv = process.env): Conninfo {
  if (!isConnectionUrl(text) && /^\s*[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) {
    fail('connection string', 'is a URL of another kind; a connection URL starts with postgres:// or postgresql://');
  }
  const given = isConnectionUrl(text) ? parseUrl(text.trim()) : parseKeywordValue(text);
  for (const name of given.keys()) {
    if (name in SUPPORTED) continue;
    if (NOT_IMPLEMENTED.has(name)) fail('connection string', `the libpq parameter "${name}" is not supported by pgtide; remove it (see docs/configuration.md for the supported ones)`);
    fail('connection string', `unknown parameter ${nameForMessage(name)}; check the spelling (supported: ${Object.keys(SUPPORTED).join(', ')})`);
  }
  // Only non-empty values count, in the string as in the environment: libpq treats an empty value as unset.
  const value = (name: string): string | undefined => {
    const inString = given.get(name);
    if (inString !== undefined && inString !== '') return inString;
    const variable = SUPPORTED[name];
    const fromEnv = variable ? env[variable] : undefined;
    return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
  };
  const source = (name: string): string => (given.get(name) ? `${name} in the connection string` : `${SUPPORTED[name] ?? name} in the environment`);

  const portText = value('port') ?? '5432';
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) fail('connection string', `${source('port')} must be a port number from 1 to 65535`);

  const sslrootcert = value('sslrootcert');
  const sslmodeText = value('sslmode');
  let sslmode: SslMode;
  if (sslmodeText === undefined) {
    // libpq: sslrootcert=system without sslmode means verify-full; otherwise the default is prefer.
    sslmode = sslrootcert === 'system' ? 'verify-full' : 'prefer';
  } else {
    if (!(SSL_MODES as readonly string[]).includes(sslmodeText)) {
      fail('connection string', `${source('sslmode')} is "${sslmodeText}"; use one of ${SSL_MODES.join(', ')}`);
    }
    sslmode = sslmodeText as SslMode;
  }
  if (sslrootcert === 'system' && sslmode !== 'verify-full') {
    fail('connection string', `sslrootcert=system trusts every certificate the system trusts, so libpq and pgtide require sslmode=verify-full with it (it is "${sslmode}")`);
  }

  const timeoutText = value('connect_timeout');
  let connectTimeout: number | undefined;
  if (timeoutText !== undefined) {
    if (!/^\d+$/.test(timeoutText)) fail('connection string', `${source('connect_timeout')} must be a whole number of seconds`);
    // libpq raises anything under 2 s to 2 s. libpq's 0 (wait forever) keeps the site's own limit:
    // pgtide never waits without a bound.
    const seconds = Number(timeoutText);
    connectTimeout = seconds === 0 ? undefined : Math.max(2, seconds);
  }

  const user = value('user') ?? osUser();
  const password = value('password');
  // Every password pgtide is given is hidden from its messages from now on, whatever quotes them.
  rememberSecret(password);
  return {
    host: value('host') ?? 'localhost',
    port,
    dbname: value('dbname') ?? user,
    user,
    password,
    sslmode,
    sslrootcert,
    sslcert: value('sslcert'),
    sslkey: value('sslkey'),
    applicationName: value('application_name'),
    fallbackApplicationName: value('fallback_application_name'),
    connectTimeout,
    options: value('options'),
  };
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'postgres';
  }
}
