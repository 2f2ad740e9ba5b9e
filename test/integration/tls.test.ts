/**
 * Issue 10, case 13: TLS follows libpq. A generated CA signs a server
 * certificate for the host name `localhost`, then one for the IP address
 * 127.0.0.1; verify-full must accept exactly the host the certificate names,
 * sslrootcert must be the trust anchor, no sslmode must mean prefer (TLS when
 * offered), and replication must run over the same TLS settings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgtideError, fromServerError } from '../../src/core/errors.js';
import { openPostgres } from '../../src/pg/connect.js';
import { makeCa, type TestCa } from '../support/tls.js';
import { TestScope, startPair, startStreaming, waitForCatchUp, assertTablesEqual, type Pair } from '../support/replication.js';

/** Connects as pgtide's own connections do and reports whether the session uses TLS. */
async function sessionUsesTls(url: string): Promise<boolean> {
  const sql = openPostgres(url, 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    const [row] = await sql<{ ssl: boolean }[]>`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`;
    return row!.ssl;
  } catch (error) {
    throw fromServerError(error, 'source');
  } finally {
    await sql.end({ timeout: 2 }).catch(() => {});
  }
}

async function assertRefused(url: string, pattern: RegExp): Promise<void> {
  await assert.rejects(sessionUsesTls(url), (error: unknown) => {
    assert.ok(error instanceof PgtideError, String(error));
    assert.equal(error.code, 'CONNECTION_FAILED', error.message);
    assert.equal(error.retryable, false, 'a certificate that does not verify will not verify on retry');
    assert.match(error.message, pattern);
    assert.doesNotMatch(error.message, /pgtide-test-pw/);
    return true;
  });
}

test('TLS follows libpq: verify-full by host name and by IP, sslrootcert, prefer by default, replication over TLS', { timeout: 300_000 }, async () => {
  const scope = new TestScope();
  try {
    const pair: Pair = await startPair(scope, { name: 'tls' });
    const dir = scope.tempDir('pgtide-tls-');
    const ca: TestCa = makeCa(dir, 'test-ca');
    const otherCa: TestCa = makeCa(dir, 'other-ca');
    const { port, user, password } = pair.source;
    const at = (host: string, params: string) => `postgres://${user}:${password}@${host}:${port}/postgres${params ? `?${params}` : ''}`;

    // 0. The server has no TLS yet: prefer falls back to plain text, require fails and says why.
    assert.equal(await sessionUsesTls(at('127.0.0.1', '')), false, 'prefer against a server without TLS: plain text');
    await assert.rejects(sessionUsesTls(at('127.0.0.1', 'sslmode=require')), (error: unknown) => {
      assert.ok(error instanceof PgtideError, String(error));
      assert.equal(error.code, 'CONNECTION_FAILED');
      assert.match(error.message, /closed the connection during the TLS handshake.*sslmode/);
      return true;
    });

    // 1. A certificate for the host name localhost.
    const byName = ca.issue('by-name', 'DNS:localhost');
    await pair.source.enableTls(byName.cert, byName.key);

    assert.equal(await sessionUsesTls(at('localhost', `sslmode=verify-full&sslrootcert=${ca.certFile}`)), true, 'verify-full by host name');
    assert.equal(await sessionUsesTls(`host=localhost port=${port} user=${user} password=${password} dbname=postgres sslmode=verify-full sslrootcert='${ca.certFile}'`), true, 'the same in key=value form');
    assert.equal(await sessionUsesTls(at('127.0.0.1', '')), true, 'no sslmode is prefer: TLS when the server offers it');
    assert.equal(await sessionUsesTls(at('127.0.0.1', 'sslmode=disable')), false, 'disable: no TLS');
    assert.equal(await sessionUsesTls(at('127.0.0.1', 'sslmode=require')), true, 'require without sslrootcert: TLS, no verification');
    assert.equal(await sessionUsesTls(at('127.0.0.1', `sslmode=verify-ca&sslrootcert=${ca.certFile}`)), true, 'verify-ca checks the chain only');
    await assertRefused(at('127.0.0.1', `sslmode=verify-full&sslrootcert=${ca.certFile}`), /TLS: the source server's TLS certificate does not name the host/);
    await assertRefused(at('localhost', `sslmode=verify-full&sslrootcert=${otherCa.certFile}`), /TLS: .*not signed by a CA that sslrootcert trusts/);
    await assertRefused(at('localhost', `sslmode=require&sslrootcert=${otherCa.certFile}`), /sslrootcert/);

    // 2. A certificate for the IP address 127.0.0.1 only.
    const byIp = ca.issue('by-ip', 'IP:127.0.0.1');
    await pair.source.enableTls(byIp.cert, byIp.key);
    const sourceUrl = at('127.0.0.1', `sslmode=verify-full&sslrootcert=${ca.certFile}`);
    assert.equal(await sessionUsesTls(sourceUrl), true, 'verify-full by IP address');
    await assertRefused(at('localhost', `sslmode=verify-full&sslrootcert=${ca.certFile}`), /does not name the host/);

    // 3. Replication over TLS: the walsender connection, the copy and the catalog reads all use it.
    await pair.src.unsafe('CREATE TABLE tls_t (id int PRIMARY KEY, v text)');
    await pair.dst.unsafe('CREATE TABLE tls_t (id int PRIMARY KEY, v text)');
    await pair.src.unsafe(`INSERT INTO tls_t SELECT g, 'copied ' || g FROM generate_series(1, 500) g`);
    const targetUrl = `host=127.0.0.1 port=${pair.target.port} user=${pair.target.user} password='${pair.target.password}' dbname=postgres sslmode=disable`;
    const running = await startStreaming(scope, { sourceUrl, targetUrl }, { tables: ['public.tls_t'] });
    await pair.src.unsafe(`INSERT INTO tls_t SELECT g, 'streamed ' || g FROM generate_series(501, 1500) g`);
    await waitForCatchUp(pair, { engine: running });
    const fingerprint = await assertTablesEqual(pair, 'public.tls_t');
    assert.equal(fingerprint.count, 1500);
    const walsenders = await pair.src.unsafe<{ ssl: boolean }[]>(
      `SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.application_name = 'pgtide'`);
    assert.equal(walsenders.length, 1, 'one pgtide walsender');
    assert.equal(walsenders[0]!.ssl, true, 'the replication connection uses TLS');
    await running.stop();
  } finally {
    await scope.cleanup();
  }
});
