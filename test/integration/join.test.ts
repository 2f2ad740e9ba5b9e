/**
 * `pgtide join` (docs/topologies.md, "Adding a node"): a third node C joins a
 * live two-way pair A ⇄ B while both nodes write. C is copied from A; the edge
 * B → C applies exactly what A's copy snapshot did not hold of B's changes.
 * A row missed around that point shows as a difference between the nodes; a
 * row applied twice stops B → C with a duplicate key, or an update of a row
 * the copy did not hold stops it as a missing row.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type postgres from 'postgres';
import {
  TestScope, startCluster, pinnedSql, startStreaming, cliConfig, writeConfigFile, runCli, waitForCatchUp, assertTablesEqual, texts, prng,
  type RunningEngine,
} from '../support/replication.js';
import { echoProbeDdl } from '../support/echo-probe.js';
import type { Cluster } from '../../src/harness/cluster.js';
import { defaultMajor } from '../../src/harness/cluster.js';

const DDL = echoProbeDdl('bigint');

interface Node { readonly name: 'a' | 'b' | 'c'; readonly cluster: Cluster; readonly sql: postgres.Sql; readonly base: number }

/** Small transactions on one node's key range until stopped: inserts, updates of its live rows, deletes. */
async function writes(node: Node, seed: number, stop: { done: boolean }): Promise<number> {
  const random = prng(seed);
  let next = node.base;
  const live: number[] = [];
  let t = 0;
  for (; !stop.done; t++) {
    await node.sql.begin(async (tx) => {
      const ids = [next++, next++];
      await tx.unsafe(`INSERT INTO items SELECT i, $1, 0, 'w' FROM unnest($2::bigint[]) AS i`, [node.name, `{${ids.join(',')}}`]);
      live.push(...ids);
      const touch = live.filter(() => random() < 0.1).slice(0, 4);
      if (touch.length > 0) await tx.unsafe(`UPDATE items SET v = v + 1 WHERE id = ANY ($1::bigint[])`, [`{${touch.join(',')}}`]);
      if (random() < 0.3 && live.length > 5) await tx.unsafe(`DELETE FROM items WHERE id = $1`, [live.splice(Math.floor(random() * live.length), 1)[0]!]);
    });
    await sleep(10);
  }
  return t;
}

describe('pgtide join: a third node joins a live two-way pair', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let nodes: [Node, Node, Node];

  before(async () => {
    const major = defaultMajor();
    const specs = [{ name: 'a', base: 1_000_000 }, { name: 'b', base: 2_000_000 }, { name: 'c', base: 3_000_000 }] as const;
    const clusters = await Promise.all(specs.map((s) => startCluster(scope, { major, name: `join-${s.name}` })));
    nodes = specs.map((s, i) => ({ ...s, cluster: clusters[i]!, sql: pinnedSql(scope, clusters[i]!) })) as unknown as [Node, Node, Node];
    for (const node of nodes) {
      await node.sql.unsafe(DDL);
      await node.sql.unsafe(`CREATE SEQUENCE marker_seq START ${node.base};
        CREATE TABLE pgtide_test_marker (id bigint PRIMARY KEY DEFAULT nextval('marker_seq'), at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    }
  });
  after(() => scope.cleanup());

  it('C copied from A while A and B write; B → C starts where the copy ends: all three converge, nothing echoes', async () => {
    const [a, b, c] = nodes;
    const endpoints = (from: Node, to: Node) => ({ sourceUrl: from.cluster.url, targetUrl: to.cluster.url });
    const edge = (from: Node, to: Node, copy: boolean) => ({ name: `j_${from.name}${to.name}`, tables: ['public.items'], origins: 'none', copy: { enabled: copy }, sequences: { enabled: false }, heartbeatIntervalMs: 1000 });
    await a.sql.unsafe(`INSERT INTO items SELECT i, 'a', 0, 'seed' FROM generate_series(1, 300) AS i`);
    const engines: { from: Node; to: Node; engine: RunningEngine }[] = [];
    const run = async (from: Node, to: Node, copy: boolean) => {
      engines.push({ from, to, engine: await startStreaming(scope, endpoints(from, to), edge(from, to, copy) as never) });
    };
    await run(a, b, true);
    await run(b, a, false);

    // Writes on A and B from now until after C has joined.
    const stop = { done: false };
    const load = Promise.all([writes(a, 1, stop), writes(b, 2, stop)]);
    await sleep(1500);
    const ac = writeConfigFile(scope, cliConfig(endpoints(a, c), edge(a, c, true)), 'ac.yaml');
    const bc = writeConfigFile(scope, cliConfig(endpoints(b, c), edge(b, c, false)), 'bc.yaml');
    // A peer edge that would copy too is refused before anything is created.
    const copying = writeConfigFile(scope, cliConfig(endpoints(b, c), edge(b, c, true)), 'bc-copy.yaml');
    const refused = await runCli(scope, ['join', '--config', ac, '--peer', copying]);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /error \[CONFIG_INVALID\]: peer edge "j_bc" has copy\.enabled/);
    const joined = await runCli(scope, ['join', '--config', ac, '--peer', bc], { timeoutMs: 180_000 });
    assert.equal(joined.code, 0, joined.stderr);
    assert.match(joined.stdout, /joined: "j_ac" copied the new node; "j_bc" will apply from the copy's position on/);
    assert.match(joined.stderr, /"viaSubscription":"j_ba"/, 'the peer edge B → C found the edge B → A on A');
    // B's tables on C wait at the position the copy holds of B's changes, which is past the slot's start.
    const [sync] = await texts(c.sql, `SELECT DISTINCT sync_lsn::text AS r FROM pgtide.table_state WHERE subscription = 'j_bc'`);
    const [slotStart] = await texts(c.sql, `SELECT start_lsn::text AS r FROM pgtide.subscription WHERE name = 'j_bc'`);
    assert.ok(sync && slotStart, 'j_bc state recorded');
    const [ordered] = await texts(c.sql, `SELECT ($1::pg_lsn >= $2::pg_lsn)::text AS r`, [sync!, slotStart!]);
    assert.equal(ordered, 'true', `sync LSN ${sync} at or after the slot's start ${slotStart}`);
    await sleep(1000);

    await run(a, c, true);
    await run(b, c, false);
    await run(c, a, false);
    await run(c, b, false);
    const loadC = writes(c, 3, stop);
    await sleep(2000);
    stop.done = true;
    const counts = [...(await load), await loadC];
    assert.ok(counts.every((n) => n > 20), `every node wrote (${counts.join(', ')})`);

    for (let round = 0; round < 2; round++) {
      for (const e of engines) await waitForCatchUp({ src: e.from.sql, dst: e.to.sql }, { engine: e.engine, timeoutMs: 90_000 });
    }
    for (const [x, y] of [[a, b], [a, c], [b, c]] as const) {
      await assertTablesEqual({ src: x.sql, dst: y.sql }, 'items', { orderBy: 't.id' });
      await assertTablesEqual({ src: x.sql, dst: y.sql }, 'pgtide_test_marker', { orderBy: 't.id' });
    }
    assert.deepEqual(await texts(c.sql, `SELECT node || ' ' || (count(*) > 0)::text AS r FROM items GROUP BY node ORDER BY node`), ['a true', 'b true', 'c true']);
    for (const node of nodes) {
      assert.deepEqual(await texts(node.sql, `SELECT count(*)::text AS r FROM applied WHERE node = $1`, [node.name]), ['0'], `nothing written on ${node.name} came back to it`);
    }
    for (const e of engines) await e.engine.stop();
  });
});
