/**
 * The acknowledgement of a keepalive position (rule b) is recorded on the
 * target before it is sent: the slot guardian compares the slot's
 * confirmed_flush_lsn with what the target recorded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReplicationSession } from '../../src/source/replication-session.js';
import type { Lsn } from '../../src/core/lsn.js';

function keepalive(walEnd: bigint, replyRequested: boolean): Buffer {
  const out = Buffer.alloc(18);
  out[0] = 0x6b;
  out.writeBigUInt64BE(walEnd, 1);
  out.writeBigInt64BE(0n, 9);
  out[17] = replyRequested ? 1 : 0;
  return out;
}

/** Flush positions of the standby status updates written to the fake server. */
function fakeServer(): { readonly stream: Duplex; readonly flushed: bigint[] } {
  const flushed: bigint[] = [];
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) { if (chunk[0] === 0x72) flushed.push(chunk.readBigUInt64BE(9)); done(); },
  });
  return { stream, flushed };
}

test('a keepalive position is sent only after persistAck resolved', async () => {
  const { stream, flushed } = fakeServer();
  let release!: () => void;
  const recorded: Lsn[] = [];
  const session = new ReplicationSession(stream, {
    statusIntervalMs: 100,
    receiveTimeoutMs: 60_000,
    ackState: () => ({ durableLsn: 100n as Lsn, quiescent: true }),
    persistAck: (lsn) => { recorded.push(lsn); return new Promise<void>((resolve) => { release = resolve; }); },
  }, 100n as Lsn);
  stream.push(keepalive(500n, true));
  await sleep(300);
  assert.deepEqual(recorded, [500n], 'the keepalive position was handed to persistAck');
  assert.ok(flushed.length > 0, 'status updates were sent meanwhile');
  assert.ok(flushed.every((f) => f <= 100n), `nothing past the applied position before it was recorded: ${flushed.join(', ')}`);
  release();
  await sleep(50);
  assert.equal(flushed.at(-1), 500n, 'sent once recorded');
  const closing = session.close();
  stream.destroy();
  await closing;
});

test('a failed persistAck is not acknowledged', async () => {
  const { stream, flushed } = fakeServer();
  const session = new ReplicationSession(stream, {
    statusIntervalMs: 100,
    receiveTimeoutMs: 60_000,
    ackState: () => ({ durableLsn: 100n as Lsn, quiescent: true }),
    persistAck: () => Promise.reject(new Error('target down')),
  }, 100n as Lsn);
  stream.push(keepalive(500n, true));
  await sleep(400);
  assert.ok(flushed.length > 0);
  assert.ok(flushed.every((f) => f <= 100n), `never sent unrecorded: ${flushed.join(', ')}`);
  const closing = session.close();
  stream.destroy();
  await closing;
});
