/**
 * The settings and stop wording of update_exists, multiple_unique_conflicts
 * and update_deleted; their statements run against real servers in
 * test/integration/conflicts-unique.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/control/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { conflictSettings } from '../../src/control/conflict-config.js';
import { uniqueStop } from '../../src/sinks/postgres/unique-conflicts.js';

const base = { source: { url: 'postgres://u:s3cret@127.0.0.1:5432/a' }, target: { url: 'postgres://u:s3cret@127.0.0.1:5433/b' } };

test('tombstones: off by default; on with a retention as a duration', () => {
  assert.equal(conflictSettings(parseConfig(base).conflicts).tombstones, undefined);
  const on = parseConfig({ ...base, conflicts: { policy: 'skip', tombstones: true, tombstoneRetention: '30m' } });
  assert.deepEqual(conflictSettings(on.conflicts).tombstones, { retentionMs: 30 * 60_000 });
  assert.deepEqual(conflictSettings(parseConfig({ ...base, conflicts: { tombstones: true } }).conflicts).tombstones, { retentionMs: 3_600_000 });
  assert.throws(() => parseConfig({ ...base, conflicts: { tombstones: true, tombstoneRetention: 'an hour' } }),
    (e: unknown) => e instanceof ConfigError && /"an hour" is not a duration/.test(e.message));
});

test('the stop of a unique conflict names the kind\'s indexes, the local keys and the remote key, worded as the server\'s 23505', () => {
  const stop = uniqueStop('multiple_unique_conflicts', JSON.stringify({
    key: { id: '2' },
    conflicts: [
      { index: 'u_code_key', local_key: { id: '201' }, what: 'Key (code)=(cz) already exists' },
      { index: 'u_email_key', local_key: { id: '200' }, what: 'Key (email)=(y@) already exists' },
    ],
  }));
  assert.ok(stop);
  assert.equal(stop.detail, 'Key (code)=(cz) already exists. Key (email)=(y@) already exists.');
  assert.match(stop.message, /^duplicate key value violates unique constraint "u_code_key" \(SQLSTATE 23505\)\./);
  assert.match(stop.message, /u_code_key holds local row \{"id":"201"\}, u_email_key holds local row \{"id":"200"\}; remote key \{"id":"2"\}/);
  // Other kinds, or a DETAIL that is not the check's JSON, keep the generic stop.
  assert.equal(uniqueStop('update_missing', '{"id": "1"}'), undefined);
  assert.equal(uniqueStop('insert_exists', '{"id": "1"}'), undefined);
});
