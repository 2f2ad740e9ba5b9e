/**
 * src/pg/bounded.ts against a server that accepts TCP connections and closes
 * them at once with FIN, as a pooler or proxy with its backend down does
 * (issue 10, case 12). No PostgreSQL needed: nothing ever answers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import postgres from 'postgres';
import { BoundedConnector, settleWithin } from '../../src/pg/bounded.js';

async function finServer(): Promise<{ readonly port: number; readonly accepted: () => number; close(): void }> {
  let accepted = 0;
  const server = net.createServer((socket) => { accepted++; socket.end(); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  // close() does not wait: its callback may never come once nothing else keeps the loop alive.
  return { port, accepted: () => accepted, close: () => { server.close(); } };
}

describe('bounded connections', () => {
  it('a query to a server that closes before the startup answer fails, and attempts back off', async () => {
    const server = await finServer();
    const connector = new BoundedConnector({ baseDelayMs: 100 });
    const sql = postgres(`postgres://u:p@127.0.0.1:${server.port}/db`, { ...connector.options, max: 1, connect_timeout: 5, onnotice: () => {} } as postgres.Options<Record<string, postgres.PostgresType>>);
    try {
      const started = Date.now();
      const outcomes: string[] = [];
      // A caller retrying at once, as a loop without backoff would: the connector still spaces attempts.
      while (Date.now() - started < 3000) {
        const error = await sql.unsafe('select 1').then(() => undefined, (e: unknown) => e);
        outcomes.push(error instanceof Error ? (error as { code?: string }).code ?? error.name : 'resolved');
      }
      const attempts = server.accepted();
      // Without the connector postgres.js reconnected at once for ever and the query never settled.
      assert.ok(outcomes.length >= 1 && outcomes.every((o) => o === 'ECONNRESET'), `every query failed with ECONNRESET: ${outcomes.slice(0, 5).join(', ')}`);
      assert.ok(attempts <= 20, `connection attempts in 3 s: ${attempts} (bounded by the backoff)`);
      assert.ok(connector.failures >= 3, `failures counted: ${connector.failures}`);
    } finally {
      await settleWithin(sql.end({ timeout: 1 }), 2000);
      connector.destroyAll();
      server.close();
    }
  });

  it('without the connector, postgres.js 3.4.9 retries at once and the query does not settle (the cause, measured)', async () => {
    const server = await finServer();
    const sql = postgres(`postgres://u:p@127.0.0.1:${server.port}/db`, { max: 1, connect_timeout: 5, onnotice: () => {} });
    try {
      const outcome = await settleWithin(sql.unsafe('select 1'), 1000);
      const attempts = server.accepted();
      assert.equal(outcome, 'timeout', 'the query did not settle within 1 s');
      assert.ok(attempts > 50, `connection attempts in 1 s: ${attempts}`);
    } finally {
      await settleWithin(sql.end({ timeout: 0 }), 2000);
      server.close();
    }
  });
});
