/**
 * The classifier is the one place that decides what pgtide retries; these are
 * the classes the docs promise for each kind of failure.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classify } from '../../src/core/error-class.js';
import { fromServerError } from '../../src/core/errors.js';

describe('error classifier', () => {
  it('transient: network, shutdown, lock timeout, serialization, deadlock, too many connections, cannot connect now', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'CONNECTION_CLOSED', 'CONNECT_TIMEOUT', '08006', '57P01', '57P02', '57P03', '55P03', '40001', '40P01', '53300']) {
      assert.equal(classify(code), 'transient', code);
    }
  });

  it('conflicts (class 23: unique, exclusion, check, not null) are retried; privileges, unsupported and data errors stop', () => {
    for (const code of ['23505', '23P01', '23514', '23502']) assert.equal(classify(code), 'conflict', code);
    for (const code of ['42501', '0A000', '22001', '42P01', '25006', undefined]) assert.equal(classify(code), 'deterministic', String(code));
  });

  it('fromServerError takes retryable from the classifier and keeps the DETAIL', () => {
    const lock = fromServerError(Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03' }), 'target');
    assert.equal(lock.retryable, true);
    const denied = fromServerError(Object.assign(new Error('permission denied for table t'), { code: '42501' }), 'target');
    assert.equal(denied.retryable, false);
    assert.equal(denied.code, 'PERMISSION_DENIED');
    const dup = fromServerError(Object.assign(new Error('duplicate key value violates unique constraint "t_pkey"'), { code: '23505', detail: 'Key (id)=(1) already exists.' }), 'target');
    assert.equal(dup.detail, 'Key (id)=(1) already exists.');
    assert.match(dup.message, /DETAIL: Key \(id\)=\(1\) already exists/);
  });
});
