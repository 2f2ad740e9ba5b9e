import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fence } from '../../src/sinks/postgres/connection-fence.js';
import { PgtideError } from '../../src/core/errors.js';

const never = (): Promise<never> => new Promise<never>(() => {});

test('a wait on an open connection is not bounded', async () => {
  const fence = new Fence();
  const result = await fence.bound(new Promise<string>((resolve) => setTimeout(() => resolve('done'), 60)), 10);
  assert.equal(result, 'done');
});

test('statements that never settle after the connection closed end in a retryable CONNECTION_FAILED', async () => {
  const fence = new Fence();
  const waiting = fence.bound(never(), 20);
  setTimeout(() => fence.close(), 10);
  await assert.rejects(waiting, (error: unknown) => error instanceof PgtideError && error.code === 'CONNECTION_FAILED' && error.retryable);
});

test('a wait that starts after the close is bounded too', async () => {
  const fence = new Fence();
  fence.close();
  await assert.rejects(fence.bound(never(), 10), (error: unknown) => error instanceof PgtideError && error.code === 'CONNECTION_FAILED');
});

test('within the grace the statements report their own outcome', async () => {
  const fence = new Fence();
  fence.close();
  const own = new Error('server closed the connection unexpectedly');
  await assert.rejects(fence.bound(Promise.reject(own), 1000), (error: unknown) => error === own);
  assert.equal(await fence.bound(Promise.resolve(7), 1000), 7);
});
