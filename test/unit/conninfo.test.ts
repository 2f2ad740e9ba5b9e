import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConninfo } from '../../src/pg/conninfo.js';
import { postgresOptions, tlsSetting } from '../../src/pg/connect.js';
import { parseConfig } from '../../src/control/config.js';
import { ConfigError } from '../../src/core/errors.js';

const NO_ENV: NodeJS.ProcessEnv = {};

test('URL: user, percent-encoded password, host, port, database, several query parameters', () => {
  const info = parseConninfo('postgresql://rep%20user:p%40ss%3Aw%2Frd@db1.example.com:6543/my%2Fdb?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=my%20app', NO_ENV);
  assert.equal(info.user, 'rep user');
  assert.equal(info.password, 'p@ss:w/rd');
  assert.equal(info.host, 'db1.example.com');
  assert.equal(info.port, 6543);
  assert.equal(info.dbname, 'my/db');
  assert.equal(info.sslmode, 'verify-full');
  assert.equal(info.sslrootcert, '/etc/ca.pem');
  assert.equal(info.applicationName, 'my app');
});

test('URL: a raw @ in the password splits at the last @; IPv6 hosts; no authority at all', () => {
  const raw = parseConninfo('postgres://u:p@ss:Leak1@127.0.0.1:5432/db', NO_ENV);
  assert.deepEqual([raw.user, raw.password, raw.host, raw.port, raw.dbname], ['u', 'p@ss:Leak1', '127.0.0.1', 5432, 'db']);
  const v6 = parseConninfo('postgres://[::1]:5433/x', NO_ENV);
  assert.deepEqual([v6.host, v6.port], ['::1', 5433]);
  const bare = parseConninfo('postgres:///x?host=%2Fvar%2Frun%2Fpostgresql', NO_ENV);
  assert.equal(bare.host, '/var/run/postgresql');
  assert.equal(parseConninfo('postgres://h/d?ssl=true', NO_ENV).sslmode, 'require');
});

test('key=value: quoting, backslash escapes, spaces around =', () => {
  const info = parseConninfo(`host=db1 port = 5433 dbname='my db' user=o\\'brien password='it\\'s a \\\\ secret' sslmode=require`, NO_ENV);
  assert.equal(info.host, 'db1');
  assert.equal(info.port, 5433);
  assert.equal(info.dbname, 'my db');
  assert.equal(info.user, "o'brien");
  assert.equal(info.password, "it's a \\ secret");
  assert.equal(info.sslmode, 'require');
});

test('PG* environment variables fill in what the string leaves out; the string wins', () => {
  const env = {
    PGHOST: 'envhost', PGPORT: '6000', PGUSER: 'envuser', PGPASSWORD: 'envpw', PGDATABASE: 'envdb', PGSSLMODE: 'verify-ca',
    PGSSLROOTCERT: '/ca.pem', PGSSLCERT: '/c.pem', PGSSLKEY: '/k.pem', PGAPPNAME: 'envapp', PGCONNECT_TIMEOUT: '7',
  };
  const fromEnv = parseConninfo('', env);
  assert.deepEqual(
    [fromEnv.host, fromEnv.port, fromEnv.user, fromEnv.password, fromEnv.dbname, fromEnv.sslmode, fromEnv.sslrootcert, fromEnv.sslcert, fromEnv.sslkey, fromEnv.applicationName, fromEnv.connectTimeout],
    ['envhost', 6000, 'envuser', 'envpw', 'envdb', 'verify-ca', '/ca.pem', '/c.pem', '/k.pem', 'envapp', 7],
  );
  const overridden = parseConninfo('postgres://u:pw@h:1234/d?sslmode=disable', env);
  assert.deepEqual([overridden.host, overridden.port, overridden.user, overridden.password, overridden.dbname, overridden.sslmode], ['h', 1234, 'u', 'pw', 'd', 'disable']);
});

test('defaults are libpq\'s: sslmode prefer, port 5432, database = user; sslrootcert=system means verify-full', () => {
  const info = parseConninfo('host=h user=alice', NO_ENV);
  assert.deepEqual([info.sslmode, info.port, info.dbname], ['prefer', 5432, 'alice']);
  assert.equal(parseConninfo('host=h sslrootcert=system', NO_ENV).sslmode, 'verify-full');
  assert.equal(parseConninfo('host=h connect_timeout=1', NO_ENV).connectTimeout, 2);
});

test('anything else is a ConfigError naming the parameter, never quoting the password', () => {
  const bad: readonly [string, RegExp][] = [
    ['postgres://u:Secr3tPw@h/d?sslmode=verify_full', /sslmode in the connection string is "verify_full"; use one of disable, allow, prefer, require, verify-ca, verify-full/],
    ['postgres://u:Secr3tPw@h/d?sslmdoe=require', /unknown parameter "sslmdoe"/],
    ['host=h password=Secr3tPw gssencmode=require', /"gssencmode" is not supported by pgtide/],
    ['postgres://u:Secr3tPw@h:port/d', /port in the connection string must be a port number/],
    ['postgres://u:Secr3tPw@h1,h2/d', /several hosts/],
    ['host=h Secr3tPw', /not followed by "="/],
    ["host=h password='Secr3tPw", /has no closing quote/],
    ['host=h sslrootcert=system sslmode=require', /sslrootcert=system .* require sslmode=verify-full/],
    ['mysql://u:Secr3tPw@h/d', /URL of another kind/],
    ['postgres://u:Secr3tPw%zz@h/d', /invalid percent-encoding/],
  ];
  for (const [text, pattern] of bad) {
    assert.throws(() => parseConninfo(text, NO_ENV), (error: unknown) => {
      assert.ok(error instanceof ConfigError, `${text}: ${String(error)}`);
      assert.equal(error.code, 'CONFIG_INVALID');
      assert.match(error.message, pattern);
      assert.doesNotMatch(error.message, /Secr3t/);
      return true;
    });
  }
  assert.throws(() => parseConninfo('host=h', { PGSSLMODE: 'on' }), /PGSSLMODE in the environment is "on"/);
});

test('config: source.url and target.url take the key=value form, and a bad string names its field', () => {
  const config = parseConfig({ source: { url: 'host=127.0.0.1 port=5432 dbname=a user=u password=x' }, target: { url: 'postgres://u@127.0.0.1/b' } });
  assert.equal(config.source.url, 'host=127.0.0.1 port=5432 dbname=a user=u password=x');
  assert.throws(() => parseConfig({ source: { url: 'host=h sslmode=bogus' }, target: { url: 'postgres://u@h/b' } }), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /source\.url: connection string: sslmode in the connection string is "bogus"/);
    return true;
  });
  assert.throws(() => parseConfig({ source: { url: 'postgres://u@h/a' }, target: { url: 'postgres://u:Pw0rd@h/b?foo=1' } }), /target\.url: connection string: unknown parameter "foo"/);
  assert.throws(() => parseConfig({ source: { url: 'postgres://u@h/a?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem' }, target: { url: 'postgres://u@h/b' } }),
    /source\.url: the sslrootcert file "\/nonexistent\/ca.pem" cannot be read \(ENOENT\)/);
});

test('factory: host, TLS and names reach postgres.js as options, not as a URL it would reread', () => {
  const options = postgresOptions('host=db1 port=6000 dbname=shop user=rep password=pw application_name=mine sslmode=disable connect_timeout=9', 'apply', {
    max: 1, idle_timeout: 0, connect_timeout: 15, connection: { application_name: 'pgtide-apply', synchronous_commit: 'on' },
  });
  assert.equal(options.host, 'db1');
  assert.equal(options.port, 6000);
  assert.equal(options.database, 'shop');
  assert.equal(options.user, 'rep');
  assert.equal(options.pass, 'pw');
  assert.equal(options.ssl, false);
  assert.equal(options.max, 1);
  assert.equal(options.idle_timeout, 0);
  assert.equal(options.connect_timeout, 9, 'connect_timeout from the string wins over the site default');
  assert.equal(options.connection?.application_name, 'mine', 'an explicit application_name wins, as in libpq');
  assert.equal(options.connection?.synchronous_commit, 'on');
  const siteNamed = postgresOptions('postgres://u@h/d', 'copy', { connection: { application_name: 'pgtide-copy' } });
  assert.equal(siteNamed.connection?.application_name, 'pgtide-copy');
  assert.equal(siteNamed.ssl, 'prefer', 'no sslmode means prefer');
  assert.equal(postgresOptions('postgres://u@h/d', 'admin').connection?.application_name, 'pgtide-admin');
});

test('factory: TLS settings follow libpq for every sslmode', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-conninfo-'));
  try {
    const bogus = path.join(dir, 'not-a-cert.pem');
    writeFileSync(bogus, 'not a certificate\n');
    const info = (text: string) => parseConninfo(text, NO_ENV);
    assert.equal(tlsSetting(info('host=h sslmode=disable')), false);
    assert.equal(tlsSetting(info('host=h sslmode=allow')), 'prefer');
    assert.equal(tlsSetting(info('host=h sslmode=prefer')), 'prefer');
    assert.equal(tlsSetting(info('host=/tmp sslmode=require')), false, 'no TLS over a Unix socket');
    assert.throws(() => tlsSetting(info('host=h sslmode=verify-full sslrootcert=/nonexistent/ca.pem')), /sslrootcert file "\/nonexistent\/ca.pem" cannot be read \(ENOENT\)/);
    assert.throws(() => tlsSetting(info(`host=h sslmode=verify-ca sslrootcert=${bogus}`)), /TLS files .* are not usable/);
    const system = tlsSetting(info('host=h sslrootcert=system'));
    assert.ok(typeof system === 'object' && system !== null && (system as { rejectUnauthorized?: boolean }).rejectUnauthorized === true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sequences check --url: a key=value connection string is not taken for name=url', async () => {
  const { parseNodeArgument } = await import('../../src/cli/sequences-command.js');
  assert.deepEqual(parseNodeArgument('host=db1 port=5433 dbname=shop user=u'), { label: 'db1:5433/shop', url: 'host=db1 port=5433 dbname=shop user=u' });
  assert.deepEqual(parseNodeArgument('east=host=db1 dbname=shop'), { label: 'east', url: 'host=db1 dbname=shop' });
  assert.deepEqual(parseNodeArgument('west=postgres://u@db2/shop'), { label: 'west', url: 'postgres://u@db2/shop' });
  assert.equal(parseNodeArgument('postgres://u:pw@db3:6000/shop').label, 'db3:6000/shop');
});
