import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '../../src/control/metrics.js';
import { lsn } from '../../src/core/lsn.js';
import { freePort } from '../../src/harness/cluster.js';

test('applied positions become lag and counters, served over HTTP on loopback', async () => {
  const metrics = new Metrics('unit');
  metrics.applied({ durableLsn: lsn(1000n), serverWalEnd: lsn(1500n), transactions: 7, changes: 42 });
  const port = await freePort();
  const close = await metrics.serve(port);
  try {
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(body, /pgtide_lag_bytes\{subscription="unit"\} 500/);
    assert.match(body, /pgtide_applied_transactions\{subscription="unit"\} 7/);
    assert.match(body, /pgtide_applied_changes\{subscription="unit"\} 42/);
    assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
  } finally {
    await close();
  }
});
