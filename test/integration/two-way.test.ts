/**
 * Topologies beyond one source and one target, on one pair of clusters A and B
 * (docs/topologies.md):
 *
 * - two-way: A → B and B → A, both with `origins: none`, under user-made
 *   FOR ALL TABLES publications (so pgtide's own schema is published on both
 *   nodes and must never be replicated); concurrent writes on disjoint keys,
 *   including a large streamed transaction on each side (whose apply on the
 *   other node is itself large and streamed back, with its origin in the first
 *   chunk only). On PostgreSQL 16+ the publisher drops replicated changes, on
 *   14 and 15 pgtide does. An ENABLE REPLICA trigger records every row pgtide
 *   applies on a node: a change that came back to the node it was written on
 *   shows up there. `pgtide check` accepts the pair and refuses it with
 *   `origins: any`.
 * - consolidation: three source databases into one target database, keys
 *   overlapping, told apart by the source tag in the target's primary key.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type postgres from 'postgres';
import {
  TestScope, startPair, databasePair, pinnedSql, startEngine, startStreaming, configInput, cliConfig, writeConfigFile, runCli,
  waitForCatchUp, assertTablesEqual, fingerprint, texts, capturingLogger, withTimeout, prng,
  type Pair, type RunningEngine,
} from '../support/replication.js';
import { echoProbeDdl } from '../support/echo-probe.js';
import { parseConfig, type ConfigInput } from '../../src/control/config.js';
import type { OriginSetting } from '../../src/apply/origin-policy.js';

/** Small enough that a few hundred rows make a transaction stream (the minimum is 64kB). */
const STREAM_SETTINGS = { logical_decoding_work_mem: '64kB' };

const TWO_WAY_DDL = `${echoProbeDdl('int')}
  CREATE PUBLICATION tw_all FOR ALL TABLES;
`;

/**
 * Writes on one node: small transactions inserting, updating and deleting rows
 * of its own key range, and one large transaction (streamed). Returns the
 * number of rows it inserted, updated and deleted.
 */
async function workload(sql: postgres.Sql, node: string, base: number, seed: number): Promise<number> {
  const random = prng(seed);
  let changes = 0;
  let next = base;
  const live: number[] = [];
  for (let t = 0; t < 30; t++) {
    await sql.begin(async (tx) => {
      const ids = [next, next + 1, next + 2, next + 3];
      next += 4;
      const inserted = await tx.unsafe(`INSERT INTO items SELECT i, $1, 0, 'small' FROM unnest($2::int[]) AS i`, [node, `{${ids.join(',')}}`]);
      changes += inserted.count;
      live.push(...ids);
      const touch = live.filter(() => random() < 0.3).slice(0, 5);
      if (touch.length > 0) {
        const updated = await tx.unsafe(`UPDATE items SET v = v + 1 WHERE id = ANY ($1::int[])`, [`{${touch.join(',')}}`]);
        changes += updated.count;
      }
      if (random() < 0.4 && live.length > 4) {
        const victim = live.splice(Math.floor(random() * live.length), 1)[0]!;
        const deleted = await tx.unsafe(`DELETE FROM items WHERE id = $1`, [victim]);
        changes += deleted.count;
      }
    });
    if (t === 15) {
      // About 400 kB: streamed to the other node, where its apply is large too.
      const big = await sql.unsafe(`INSERT INTO items SELECT $2::int + i, $1, i, repeat('x', 100) FROM generate_series(1, 3000) AS i`, [node, base * 10]);
      changes += big.count;
    }
  }
  return changes;
}

describe('two-way replication and consolidation', { timeout: 900_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;

  before(async () => {
    pair = await startPair(scope, { name: 'topo', sourceSettings: STREAM_SETTINGS, targetSettings: STREAM_SETTINGS });
  });
  after(() => scope.cleanup());

  /**
   * Sets up a pair in its own database, starts A → B (copy) and B → A (copy off) with these
   * origin settings, runs the workload on both sides at once, and checks that the nodes
   * converged and that every change was applied once, on the other node only.
   */
  async function twoWay(database: string, names: { readonly ab: string; readonly ba: string }, origins: { readonly ab: OriginSetting; readonly ba: OriginSetting }, filteredBy: string) {
    const ab = await databasePair(scope, pair, database);
    const ba = { src: ab.dst, dst: ab.src, sourceUrl: ab.targetUrl, targetUrl: ab.sourceUrl };
    const [A, B] = [ab.src, ab.dst];
    await A.unsafe(TWO_WAY_DDL);
    await B.unsafe(TWO_WAY_DDL);
    // Both nodes insert markers for waitForCatchUp: keep their keys apart.
    await B.unsafe(`ALTER SEQUENCE pgtide_test_marker_id_seq RESTART WITH 1000000000`);
    await A.unsafe(`INSERT INTO items SELECT i, 'A', 0, 'initial' FROM generate_series(1, 100) AS i`);

    // A → B copies; B → A starts with the copy off (B holds A's rows once the first edge copied them).
    const logAB = capturingLogger();
    const configAB = parseConfig(configInput(ab, { name: names.ab, publication: 'tw_all', origins: origins.ab as ConfigInput['origins'] }));
    const edgeAB: RunningEngine = startEngine(scope, configAB, {}, logAB.logger);
    await withTimeout(edgeAB.streaming, 120_000, 'A → B did not reach streaming');
    const edgeBA = await startStreaming(scope, ba, { name: names.ba, publication: 'tw_all', origins: origins.ba as ConfigInput['origins'], copy: { enabled: false } });
    await waitForCatchUp(ab, { engine: edgeAB });
    await waitForCatchUp(ba, { engine: edgeBA });
    assert.ok(logAB.lines.some((l) => l.includes('"streaming started"') && l.includes(`"originFilter":"${filteredBy}"`)), `origin filter by ${filteredBy}; log:\n${logAB.lines.filter((l) => l.includes('streaming started')).join('\n')}`);

    const [changesA, changesB] = await Promise.all([workload(A, 'A', 1000, 11), workload(B, 'B', 2000, 22)]);
    await waitForCatchUp(ab, { engine: edgeAB });
    await waitForCatchUp(ba, { engine: edgeBA });
    // Whatever B applied of A's before its marker has reached A by now, echoes included.
    await waitForCatchUp(ab, { engine: edgeAB });

    await assertTablesEqual(ab, 'items', { orderBy: 't.id' });
    const [countA] = await texts(A, `SELECT count(*)::text AS r FROM items`);
    assert.ok(Number(countA) > 6000, `items holds both sides' rows (${countA})`);
    // Each change was applied exactly once, on the other node only.
    assert.deepEqual(await texts(A, `SELECT count(*)::text AS r FROM applied WHERE node = 'A'`), ['0'], 'no change written on A came back to A');
    assert.deepEqual(await texts(B, `SELECT count(*)::text AS r FROM applied WHERE node = 'B'`), ['0'], 'no change written on B came back to B');
    assert.deepEqual(await texts(B, `SELECT count(*)::text AS r FROM applied WHERE node = 'A' AND item >= 1000`), [String(changesA)], 'every row change of A applied once on B');
    assert.deepEqual(await texts(A, `SELECT count(*)::text AS r FROM applied WHERE node = 'B'`), [String(changesB)], 'every row change of B applied once on A');
    return { ab, ba, A, B, configAB, edgeAB, edgeBA };
  }

  it('A ⇄ B with origins none: concurrent writes converge and nothing comes back to its node; pgtide.* is never replicated', async () => {
    // 16+: the publisher filters (origin 'none'); 14 and 15: pgtide does.
    const run = await twoWay('twoway', { ab: 'tw_ab', ba: 'tw_ba' }, { ab: 'none', ba: 'none' }, pair.major >= 16 ? 'source' : 'pgtide');
    const { ab, ba, A, B, configAB, edgeBA } = run;
    let { edgeAB } = run;

    // pgtide's state stays per node although FOR ALL TABLES publishes it on both.
    const ownState = async () => {
      assert.deepEqual(await texts(A, `SELECT name AS r FROM pgtide.subscription ORDER BY 1`), ['tw_ba']);
      assert.deepEqual(await texts(B, `SELECT name AS r FROM pgtide.subscription ORDER BY 1`), ['tw_ab']);
      for (const node of [A, B]) {
        assert.deepEqual(await texts(node, `SELECT DISTINCT subscription AS r FROM pgtide.apply_progress`), [node === A ? 'tw_ba' : 'tw_ab']);
        assert.deepEqual(await texts(node, `SELECT format('%I.%I', schema_name, table_name) AS r FROM pgtide.table_state WHERE schema_name = 'pgtide'`), [], 'no pgtide table is subscribed');
      }
    };
    await ownState();

    // A restart of A → B reads A's publication again, which now also lists A's pgtide tables
    // (created when B → A started): they must stay out of its copy and its stream.
    await edgeAB.stop();
    edgeAB = startEngine(scope, configAB);
    await withTimeout(edgeAB.streaming, 120_000, 'A → B did not restart');
    await A.unsafe(`UPDATE items SET v = v + 100 WHERE id <= 10`);
    await B.unsafe(`UPDATE items SET v = v + 100 WHERE id BETWEEN 2000 AND 2010`);
    await waitForCatchUp(ab, { engine: edgeAB });
    await waitForCatchUp(ba, { engine: edgeBA });
    await waitForCatchUp(ab, { engine: edgeAB });
    await assertTablesEqual(ab, 'items', { orderBy: 't.id' });
    await assertTablesEqual(ab, 'pgtide_test_marker', { orderBy: 't.id' });
    await ownState();
    assert.deepEqual(await texts(A, `SELECT count(*)::text AS r FROM applied WHERE node = 'A'`), ['0']);
    assert.deepEqual(await texts(B, `SELECT count(*)::text AS r FROM applied WHERE node = 'B'`), ['0']);
    await edgeAB.stop();
    await edgeBA.stop();

    // pgtide check: this pair passes; the same pair with origins any on both edges loops.
    const files = (origins: string) => [
      writeConfigFile(scope, cliConfig(ab, { name: 'tw_ab', publication: 'tw_all', origins }), 'ab.yaml'),
      writeConfigFile(scope, cliConfig(ba, { name: 'tw_ba', publication: 'tw_all', origins, copy: { enabled: false }, sequences: { enabled: false } }), 'ba.yaml'),
    ];
    const [okAB, okBA] = files('none');
    const ok = await runCli(scope, ['check', '--config', okAB!, '--config', okBA!]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /ok: 2 edge\(s\)/);
    const [loopAB, loopBA] = files('any');
    const loop = await runCli(scope, ['check', '--config', loopAB!, '--config', loopBA!]);
    assert.equal(loop.code, 1, loop.stdout);
    assert.match(loop.stderr, /error \[TOPOLOGY_LOOP\]: the topology of these configs is not safe/);
    assert.match(loop.stderr, /a change written on \S+\/twoway comes back to \S+\/twoway/);
  });

  it('A ⇄ B with deny lists (filtered by pgtide on every major); sequence sync and a looping edge are refused at start', async () => {
    const run = await twoWay('twoway_deny', { ab: 'twd_ab', ba: 'twd_ba' }, { ab: { deny: ['pgtide_twd_ba_*'] }, ba: { deny: ['pgtide_twd_ab_*'] } }, 'pgtide');
    await run.edgeAB.stop();
    await run.edgeBA.stop();
    // The config says the tables are written on two nodes: sequence sync would make them collide.
    const refused = startEngine(scope, parseConfig(configInput(run.ab, { name: 'twd_ab', publication: 'tw_all', origins: 'none', sequences: { enabled: true } })));
    await refused.done;
    assert.equal((refused.error as { code?: string } | undefined)?.code, 'CONFIG_INVALID', String(refused.error));
    assert.match(String((refused.error as Error).message), /origins: none .*`pgtide sequences install`/s);
    // An edge that would forward what the reverse edge applies is refused at start.
    const looping = startEngine(scope, parseConfig(configInput(run.ab, { name: 'twd_ab', publication: 'tw_all', origins: 'any' })));
    await looping.done;
    assert.equal((looping.error as { code?: string } | undefined)?.code, 'TOPOLOGY_LOOP', String(looping.error));
    assert.match(String((looping.error as Error).message), /subscription "twd_ba" already replicates this target database into this source database .* Set `origins: none`/s);
  });

  it('three sources into one target: overlapping keys told apart by the source tag, copy and stream', async () => {
    const names = ['c1', 'c2', 'c3'];
    await pair.target.createDatabase('hub');
    const hub = pinnedSql(scope, pair.target, 'hub');
    await hub.unsafe(`
      CREATE TABLE orders (id int NOT NULL, amount int NOT NULL, src text NOT NULL, PRIMARY KEY (src, id));
      CREATE TABLE pgtide_test_marker (id bigint NOT NULL, at timestamptz NOT NULL, src text NOT NULL, PRIMARY KEY (src, id));`);
    const engines: RunningEngine[] = [];
    const sources: postgres.Sql[] = [];
    for (const [index, name] of names.entries()) {
      await pair.source.createDatabase(name);
      const src = pinnedSql(scope, pair.source, name);
      sources.push(src);
      await src.unsafe(`
        CREATE TABLE orders (id int PRIMARY KEY, amount int NOT NULL);
        CREATE TABLE pgtide_test_marker (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
        ALTER SEQUENCE pgtide_test_marker_id_seq RESTART WITH ${(index + 1) * 1_000_000};
        INSERT INTO orders SELECT i, i * ${index + 1} FROM generate_series(1, 50) AS i;`);
      const endpoints = { sourceUrl: pair.source.urlFor(name), targetUrl: pair.target.urlFor('hub') };
      engines.push(await startStreaming(scope, endpoints, { name, tables: ['public.orders'], sourceTag: { column: 'src', value: name } }));
    }
    await Promise.all(sources.map(async (src, index) => {
      await src.unsafe(`INSERT INTO orders SELECT i, i FROM generate_series(51, 80) AS i`);
      await src.unsafe(`UPDATE orders SET amount = amount + 1000 WHERE id % 7 = ${index}`);
      await src.unsafe(`DELETE FROM orders WHERE id % 11 = ${index}`);
      // Streamed, and applied while it streams: the tag must be filled on that path too.
      if (index === 1) await src.unsafe(`INSERT INTO orders SELECT i, i FROM generate_series(1000, 4000) AS i`);
    }));
    for (const [index, src] of sources.entries()) {
      await waitForCatchUp({ src, dst: hub }, { engine: engines[index]! });
    }
    const view = { columns: 't.id, t.amount', orderBy: 't.id' };
    for (const [index, name] of names.entries()) {
      const [fromSource, inHub] = await Promise.all([fingerprint(sources[index]!, 'orders', view), fingerprint(hub, `(SELECT * FROM orders WHERE src = '${name}')`, view)]);
      assert.deepEqual(inHub, fromSource, `${name}'s rows in the hub`);
      assert.ok(fromSource.count >= 60, `${name} has rows (${fromSource.count})`);
    }
    const [total] = await texts(hub, `SELECT count(*)::text AS r FROM orders`);
    const expected = (await Promise.all(sources.map((s) => texts(s, `SELECT count(*)::text AS r FROM orders`)))).reduce((sum, [n]) => sum + Number(n), 0);
    assert.equal(Number(total), expected, 'the hub holds every source\'s rows and nothing else');
    // One target database, three subscriptions, three origins.
    assert.deepEqual(await texts(hub, `SELECT name AS r FROM pgtide.subscription ORDER BY 1`), names);
    assert.deepEqual(await texts(hub, `SELECT subscription AS r FROM pgtide.apply_progress ORDER BY 1`), names);
    const [oid] = await texts(hub, `SELECT oid::text AS r FROM pg_database WHERE datname = current_database()`);
    assert.deepEqual(await texts(hub, `SELECT roname AS r FROM pg_replication_origin WHERE roname ~ '^pgtide_c[0-9]_[0-9]+$' ORDER BY 1`), names.map((n) => `pgtide_${n}_${oid}`));
    // c2's large transaction was applied while it streamed, on a connection with an origin of its
    // own, which that connection dropped when it closed: every origin holds a replication state slot.
    assert.deepEqual(await texts(hub, `SELECT roname AS r FROM pg_replication_origin WHERE roname LIKE 'pgtide\\_c%\\_s_' ORDER BY 1`), []);
    for (const engine of engines) await engine.stop();
    // pgtide drop removes the edge's origins, the streamed connections' own included.
    const c2 = writeConfigFile(scope, cliConfig({ sourceUrl: pair.source.urlFor('c2'), targetUrl: pair.target.urlFor('hub') }, { name: 'c2', tables: ['public.orders'] }), 'c2.yaml');
    const dropped = await runCli(scope, ['drop', '--config', c2]);
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.deepEqual(await texts(hub, `SELECT roname AS r FROM pg_replication_origin WHERE roname LIKE 'pgtide\\_c2\\_%'`), []);
    assert.deepEqual(await texts(hub, `SELECT name AS r FROM pgtide.subscription ORDER BY 1`), ['c1', 'c3']);
  });
});
