/**
 * A three-node mesh of mixed majors (docs/topologies.md, "Mesh"): nodes on
 * PostgreSQL 14, 16 and 18, six pgtide edges (every ordered pair) run as CLI
 * child processes, each with `origins: none`. The 14 node's outgoing edges are
 * filtered by pgtide (the 14 walsender cannot), the others by the publisher.
 *
 * Seeding: only the 14 node holds rows before the mesh starts; its two
 * outgoing edges copy them, and the four other edges start with the copy off
 * once those two stream (their slots are created after the copy, which wrote
 * without an origin, so the copied rows are never sent on).
 *
 * Load: random small transactions on all three nodes at once (inserts,
 * updates, deletes, each node in its own key range), one transaction on the
 * 14 node large enough to be streamed, and a kill -9 of each of the six
 * pgtide processes (restarted at once) while that goes on. Then every node
 * must hold the same rows, and an ENABLE REPLICA trigger, which records every
 * row pgtide applies, must show nothing that came back to the node it was
 * written on.
 *
 * The majors are fixed (14, 16, 18), whatever PGTIDE_PG_MAJOR says, so the
 * file runs in the first pass of `npm test` only (PGTIDE_SKIP_CHAOS is set for
 * the later ones, scripts/test-majors.mjs).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type postgres from 'postgres';
import {
  TestScope, startCluster, pinnedSql, cliConfig, writeConfigFile, startCli, waitForCatchUp, assertTablesEqual, texts, prng,
  type CliProcess,
} from '../support/replication.js';
import { echoProbeDdl } from '../support/echo-probe.js';
import type { Cluster, PgMajor } from '../../src/harness/cluster.js';

const SKIP = process.env.PGTIDE_SKIP_CHAOS ? 'the mesh (fixed majors 14, 16, 18) already ran in the first major of this npm test' : false;

const MESH_DDL = echoProbeDdl('bigint');

interface MeshNode {
  readonly name: 'a' | 'b' | 'c';
  readonly major: PgMajor;
  readonly cluster: Cluster;
  readonly sql: postgres.Sql;
  /** First key of this node's range in items. */
  readonly base: number;
}

interface Edge {
  readonly name: string;
  readonly from: MeshNode;
  readonly to: MeshNode;
  readonly file: string;
  cli: CliProcess;
  kills: number;
}

/**
 * Random transactions on one node's own key range until `stop` is set: each
 * inserts 1–3 rows, updates up to 3 live ones and sometimes deletes one. With
 * `bigAt`, transaction number `bigAt` is a 3000-row insert plus an update of a
 * third of it (about 450 kB of changes: streamed, the harness sets
 * logical_decoding_work_mem to 64kB).
 */
async function load(node: MeshNode, seed: number, stop: { done: boolean }, bigAt?: number): Promise<number> {
  const random = prng(seed);
  let next = node.base;
  const live: number[] = [];
  let t = 0;
  for (; !stop.done || (bigAt !== undefined && t <= bigAt); t++) {
    if (t === bigAt) {
      await node.sql.begin(async (tx) => {
        await tx.unsafe(`INSERT INTO items SELECT $1::bigint + i, $2, i, repeat('x', 120) FROM generate_series(0, 2999) AS i`, [node.base + 500_000, node.name]);
        await tx.unsafe(`UPDATE items SET v = -v WHERE id BETWEEN $1::bigint AND $1::bigint + 2999 AND id % 3 = 0`, [node.base + 500_000]);
      });
      continue;
    }
    await node.sql.begin(async (tx) => {
      const ids = Array.from({ length: 1 + Math.floor(random() * 3) }, () => next++);
      await tx.unsafe(`INSERT INTO items SELECT i, $1, 0, 'small' FROM unnest($2::bigint[]) AS i`, [node.name, `{${ids.join(',')}}`]);
      live.push(...ids);
      const touch = live.filter(() => random() < 0.05).slice(0, 3);
      if (touch.length > 0) await tx.unsafe(`UPDATE items SET v = v + 1 WHERE id = ANY ($1::bigint[])`, [`{${touch.join(',')}}`]);
      if (random() < 0.3 && live.length > 5) {
        const victim = live.splice(Math.floor(random() * live.length), 1)[0]!;
        await tx.unsafe(`DELETE FROM items WHERE id = $1`, [victim]);
      }
    });
    await sleep(15);
  }
  return t;
}

describe('three-node mesh of PostgreSQL 14, 16 and 18', { timeout: 600_000, skip: SKIP }, () => {
  const scope = new TestScope();
  let nodes: MeshNode[];

  before(async () => {
    const specs = [{ name: 'a', major: 14, base: 1_000_000 }, { name: 'b', major: 16, base: 2_000_000 }, { name: 'c', major: 18, base: 3_000_000 }] as const;
    const clusters = await Promise.all(specs.map((s) => startCluster(scope, { major: s.major, name: `mesh-${s.name}${s.major}` })));
    nodes = specs.map((s, i) => ({ ...s, cluster: clusters[i]!, sql: pinnedSql(scope, clusters[i]!) }));
    for (const node of nodes) {
      await node.sql.unsafe(MESH_DDL);
      // Every node inserts markers for waitForCatchUp: keep their keys apart.
      await node.sql.unsafe(`CREATE SEQUENCE marker_seq START ${node.base};
        CREATE TABLE pgtide_test_marker (id bigint PRIMARY KEY DEFAULT nextval('marker_seq'), at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    }
  });
  after(() => scope.cleanup());

  it('six edges with origins none converge under concurrent writes and a kill -9 of every pgtide process; nothing comes back to its node', async () => {
    const [a, b, c] = nodes as [MeshNode, MeshNode, MeshNode];
    await a.sql.unsafe(`INSERT INTO items SELECT i, 'a', 0, 'seed' FROM generate_series(1, 200) AS i`);

    const edges: Edge[] = [];
    const start = (from: MeshNode, to: MeshNode, copy: boolean): Edge => {
      const name = `mesh_${from.name}${to.name}`;
      const file = writeConfigFile(scope, cliConfig({ sourceUrl: from.cluster.url, targetUrl: to.cluster.url }, {
        name, tables: ['public.items'], origins: 'none', copy: { enabled: copy }, sequences: { enabled: false }, heartbeatIntervalMs: 1000,
      }), `${name}.yaml`);
      const edge: Edge = { name, from, to, file, cli: startCli(scope, ['start', '--config', file]), kills: 0 };
      edges.push(edge);
      return edge;
    };
    const streaming = (edge: Edge) => edge.cli.waitForStderr(/"streaming started"/, 120_000);
    // Seed: a's rows are copied to b and c; the other edges start after, with the copy off.
    await Promise.all([start(a, b, true), start(a, c, true)].map(streaming));
    await Promise.all([start(b, a, false), start(b, c, false), start(c, a, false), start(c, b, false)].map(streaming));
    const byName = (name: string) => edges.find((e) => e.name === name)!;
    assert.match(byName('mesh_ab').cli.stderr(), /"originFilter":"pgtide"/, 'the 14 node\'s edges filter in pgtide');
    assert.match(byName('mesh_bc').cli.stderr(), /"originFilter":"source"/, 'the 16 node\'s edges filter on the publisher');
    for (const node of [b, c]) assert.deepEqual(await texts(node.sql, `SELECT count(*)::text AS r FROM items`), ['200'], `${node.name} holds a's seed rows`);

    // Load on all three nodes; meanwhile kill -9 each pgtide process once and restart it.
    const stop = { done: false };
    const loads = Promise.all([load(a, 1, stop, 40), load(b, 2, stop), load(c, 3, stop)]);
    const random = prng(14_16_18);
    for (const edge of [...edges].sort(() => random() - 0.5)) {
      await sleep(500 + Math.floor(random() * 1000));
      edge.cli.kill('SIGKILL');
      await edge.cli.exited;
      edge.kills++;
      edge.cli = startCli(scope, ['start', '--config', edge.file]);
      await streaming(edge);
    }
    stop.done = true;
    const transactions = await loads;
    assert.ok(transactions.every((n) => n > 40), `each node committed transactions under the kills (${transactions.join(', ')})`);
    assert.deepEqual(edges.map((e) => e.kills), [1, 1, 1, 1, 1, 1]);

    // Every edge caught up twice: the second round would carry any echo of the first.
    for (let round = 0; round < 2; round++) {
      for (const edge of edges) await waitForCatchUp({ src: edge.from.sql, dst: edge.to.sql }, { cli: edge.cli, timeoutMs: 90_000 });
    }
    for (const [x, y] of [[a, b], [a, c], [b, c]] as const) {
      await assertTablesEqual({ src: x.sql, dst: y.sql }, 'items', { orderBy: 't.id' });
      await assertTablesEqual({ src: x.sql, dst: y.sql }, 'pgtide_test_marker', { orderBy: 't.id' });
    }
    const [total, big] = await Promise.all([
      texts(a.sql, `SELECT count(DISTINCT node)::text || ' ' || (count(*) > 600)::text AS r FROM items`),
      texts(b.sql, `SELECT count(*)::text AS r FROM items WHERE id BETWEEN 1500000 AND 1502999`),
    ]);
    assert.deepEqual(total, ['3 true'], 'every node\'s writes are on every node');
    assert.deepEqual(big, ['3000'], 'a\'s large transaction reached b');
    // It was streamed by the 14 walsender and applied while it streamed, under the connection's own
    // origin, which the connection dropped when it closed (each origin holds a replication state
    // slot): none is left behind. That its rows carried an origin is what the echo check below shows.
    for (const node of [b, c]) {
      assert.deepEqual(await texts(node.sql, `SELECT count(*)::text AS r FROM pg_replication_origin WHERE roname LIKE 'pgtide\\_mesh\\_a${node.name}\\_%\\_s_'`), ['0'], `no streamed connection's origin is left on ${node.name}`);
    }
    if (process.env.PGTIDE_TEST_DEBUG) process.stderr.write(`mesh: transactions per node ${transactions.join(', ')}; rows ${(await texts(a.sql, `SELECT count(*)::text AS r FROM items`)).join('')}\n`);
    for (const node of nodes) {
      assert.deepEqual(await texts(node.sql, `SELECT count(*)::text AS r FROM applied WHERE node = $1`, [node.name]), ['0'], `no change written on ${node.name} came back to ${node.name}`);
      const others = await texts(node.sql, `SELECT node || ' ' || (count(*) > 0)::text AS r FROM applied GROUP BY node ORDER BY node`);
      assert.deepEqual(others, nodes.filter((n) => n !== node).map((n) => `${n.name} true`), `${node.name} applied the other nodes' changes`);
    }
    for (const edge of edges) edge.cli.kill('SIGTERM');
    const exits = await Promise.all(edges.map((e) => e.cli.exited));
    assert.deepEqual(exits.map((e) => e.code), [0, 0, 0, 0, 0, 0], 'every edge stopped cleanly');
  });
});
