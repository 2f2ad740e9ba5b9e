/**
 * `pgtide check --keys` (docs/topologies.md, "Key-space check"): three source
 * databases consolidated into one target database. Keys are judged by the
 * target's key: a source-tag column in it keeps the sources apart, and without
 * it the sources' own keys must be disjoint. Nothing is started: the check
 * reads the configs, the sources' keys and the target's catalog only.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestScope, startPair, pinnedSql, writeConfigFile, runCli, type Pair } from '../support/replication.js';

describe('pgtide check --keys', { timeout: 300_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;
  let files: Record<'k1' | 'k2' | 'k3', string>;

  before(async () => {
    pair = await startPair(scope, { name: 'keys' });
    await pair.target.createDatabase('hub');
    const hub = pinnedSql(scope, pair.target, 'hub');
    await hub.unsafe(`
      -- The tag is in the key: overlapping ids of different sources are different rows.
      CREATE TABLE orders (id int NOT NULL, amount int NOT NULL, src text NOT NULL, PRIMARY KEY (src, id));
      -- The tag is not in the key: the sources' ids must be disjoint.
      CREATE TABLE accounts (id int PRIMARY KEY, owner text, src text NOT NULL);
      CREATE TABLE lines (order_id int, line_no int, qty int, src text NOT NULL, PRIMARY KEY (order_id, line_no));`);
    const ranges = { k1: [1, 100], k2: [91, 200], k3: [1001, 1100] } as const;
    const made: Partial<Record<keyof typeof ranges, string>> = {};
    for (const [name, [from, to]] of Object.entries(ranges) as [keyof typeof ranges, readonly [number, number]][]) {
      await pair.source.createDatabase(name);
      const src = pinnedSql(scope, pair.source, name);
      await src.unsafe(`
        CREATE TABLE orders (id int PRIMARY KEY, amount int NOT NULL);
        CREATE TABLE accounts (id int PRIMARY KEY, owner text);
        CREATE TABLE lines (order_id int, line_no int, qty int, PRIMARY KEY (order_id, line_no));
        INSERT INTO orders SELECT i, i FROM generate_series(1, 50) AS i;
        INSERT INTO accounts SELECT i, '${name}' FROM generate_series(${from}, ${to}) AS i;
        INSERT INTO lines SELECT ${from} + i / 3, i % 3, 1 FROM generate_series(0, 29) AS i;`);
      made[name] = writeConfigFile(scope, {
        name, source: { url: pair.source.urlFor(name) }, target: { url: pair.target.urlFor('hub') },
        tables: ['public.orders', 'public.accounts', 'public.lines'], sourceTag: { column: 'src', value: name }, sequences: { enabled: false },
      }, `${name}.yaml`);
    }
    files = made as Record<keyof typeof ranges, string>;
  });
  after(() => scope.cleanup());

  it('passes sources whose keys are disjoint, or kept apart by the source tag in the target key', async () => {
    const ok = await runCli(scope, ['check', '--keys', '--config', files.k1, '--config', files.k3]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /public\.orders: edges with different values of the tag column in the key cannot collide/);
    assert.match(ok.stdout, /public\.accounts: key \(id\) compared across k1 \(\S+\), k3 \(\S+\): disjoint/);
    assert.match(ok.stdout, /public\.lines: key \(order_id, line_no\) compared across k1 \(\S+\), k3 \(\S+\): disjoint/);
    assert.match(ok.stdout, /ok: no key is held by two sources that write into one target table/);
  });

  it('refuses keys two sources both hold, with a count and a sample per table', async () => {
    const refused = await runCli(scope, ['check', '--keys', '--config', files.k1, '--config', files.k2, '--config', files.k3]);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /^error \[KEYSPACE_OVERLAP\]: sources that write into one target table hold the same keys/);
    // accounts: k1 holds 1..100, k2 91..200.
    const accounts = /public\.accounts: (\d+) key\(s\) \(id\) held by both k1 \(\S+\) and k2 \(\S+\), e\.g\. ((?:\(\d+\) ?)+)/.exec(refused.stderr);
    assert.ok(accounts, refused.stderr);
    assert.equal(accounts[1], '10');
    const sample = accounts[2]!.trim().split(' ').map((k) => Number(k.slice(1, -1)));
    assert.equal(sample.length, 5);
    assert.ok(sample.every((k) => k >= 91 && k <= 100), `sample keys are shared ones: ${sample.join(', ')}`);
    // lines: (order_id, line_no) from 1..10 on k1 and 91..100 on k2: disjoint; orders: told apart by the tag.
    assert.doesNotMatch(refused.stderr, /public\.lines|public\.orders/);
    assert.doesNotMatch(refused.stderr, /k3/, 'k3 shares no key');
    assert.doesNotMatch(refused.stderr, /pgtide-test-pw/, 'no password in the error');

    // Without --keys the same configs pass: only the topology is checked.
    const topologyOnly = await runCli(scope, ['check', '--config', files.k1, '--config', files.k2, '--config', files.k3]);
    assert.equal(topologyOnly.code, 0, topologyOnly.stderr);
  });
});
