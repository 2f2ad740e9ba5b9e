/**
 * The initial copy follows the publication(s) as PostgreSQL's own table sync
 * does (row filters, column lists, published generated columns, several
 * publications) and keeps the rows that exist only on the target (issue 11,
 * cases 1, 2, 3 and 8). Every test runs in its own database pair with its own
 * slot, so a failing one does not disturb the others.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TestScope, startPair, databasePair, ddlBoth, startStreaming, startEngine, configInput, waitForCatchUp, texts, startCli, cliConfig, writeConfigFile, waitFor,
  MARKER_TABLE, type Pair,
} from '../support/replication.js';
import { parseConfig } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';

const MARKER = MARKER_TABLE.replace(/^public\./, '');

describe('initial copy parity with the built-in subscriber', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;
  let databases = 0;
  const fresh = async () => databasePair(scope, pair, `parity_${++databases}`);
  const major = () => pair.major;

  before(async () => {
    pair = await startPair(scope, { name: 'cparity' });
  });

  after(() => scope.cleanup());

  const rows = (p: Pair, query: string) => texts(p.dst, query);

  it('row filters: copies only matching rows, the root filter applies to every partition (PostgreSQL 15+)', async (t) => {
    if (major() < 15) { t.skip('publication row filters need PostgreSQL 15+'); return; }
    const p = await fresh();
    await ddlBoth(p, `
      CREATE TABLE rf (id int PRIMARY KEY, n int);
      CREATE TABLE parted (id int PRIMARY KEY, n int) PARTITION BY RANGE (id);
      CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM (0) TO (100);
      CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM (100) TO (200);`);
    await p.src.unsafe(`
      INSERT INTO rf VALUES (1, 1), (2, 200), (3, 300);
      INSERT INTO parted VALUES (1, 1), (2, 500), (101, 2), (102, 600);
      CREATE PUBLICATION p_rf FOR TABLE rf WHERE (n > 100), parted WHERE (n > 100), ${MARKER} WITH (publish_via_partition_root = true);`);
    const engine = await startStreaming(scope, p, { name: 'rf', publication: 'p_rf' });
    assert.deepEqual(await rows(p, `SELECT id || ':' || n AS r FROM rf ORDER BY id`), ['2:200', '3:300']);
    assert.deepEqual(await rows(p, `SELECT id || ':' || n AS r FROM parted ORDER BY id`), ['2:500', '102:600']);
    // Streaming filters too (pgoutput does it): the copy and the stream agree.
    await p.src.unsafe(`INSERT INTO rf VALUES (4, 4), (5, 500); INSERT INTO parted VALUES (3, 3), (103, 700)`);
    await waitForCatchUp(p, { engine });
    assert.deepEqual(await rows(p, `SELECT id || ':' || n AS r FROM rf ORDER BY id`), ['2:200', '3:300', '5:500']);
    assert.deepEqual(await rows(p, `SELECT id || ':' || n AS r FROM parted ORDER BY id`), ['2:500', '102:600', '103:700']);
    await engine.stop();
  });

  it('several publications: row filters are OR-ed, a publication without a filter means all rows (PostgreSQL 15+)', async (t) => {
    if (major() < 15) { t.skip('publication row filters and column lists need PostgreSQL 15+'); return; }
    const p = await fresh();
    await ddlBoth(p, `
      CREATE TABLE orf (id int PRIMARY KEY, n int);
      CREATE TABLE nof (id int PRIMARY KEY, n int);
      CREATE TABLE cols (id int PRIMARY KEY, a text, b text, c text);`);
    await p.src.unsafe(`
      INSERT INTO orf SELECT g, g FROM generate_series(1, 10) g;
      INSERT INTO nof SELECT g, g FROM generate_series(1, 10) g;
      INSERT INTO cols SELECT g, 'a' || g, 'b' || g, 'c' || g FROM generate_series(1, 3) g;
      CREATE PUBLICATION p_one FOR TABLE orf WHERE (n < 3), nof WHERE (n < 3), cols (id, a, b), ${MARKER};
      CREATE PUBLICATION p_two FOR TABLE orf WHERE (n > 8), nof, cols (id, a, b);`);
    const engine = await startStreaming(scope, p, { name: 'multi', publication: ['p_one', 'p_two'] });
    assert.deepEqual(await rows(p, `SELECT id AS r FROM orf ORDER BY id`), ['1', '2', '9', '10']);
    assert.deepEqual(await rows(p, `SELECT count(*) AS r FROM nof`), ['10']);
    assert.deepEqual(await rows(p, `SELECT concat_ws(',', id, a, b, coalesce(c, 'null')) AS r FROM cols ORDER BY id`), ['1,a1,b1,null', '2,a2,b2,null', '3,a3,b3,null']);
    await p.src.unsafe(`INSERT INTO cols VALUES (4, 'a4', 'b4', 'c4'); INSERT INTO orf VALUES (11, 11), (12, 0), (13, 5)`);
    await waitForCatchUp(p, { engine });
    assert.deepEqual(await rows(p, `SELECT concat_ws(',', id, a, b, coalesce(c, 'null')) AS r FROM cols WHERE id = 4`), ['4,a4,b4,null']);
    assert.deepEqual(await rows(p, `SELECT id AS r FROM orf ORDER BY id`), ['1', '2', '9', '10', '11', '12']);
    await engine.stop();
  });

  it('several publications with different column lists for one table: refused at start, as PostgreSQL refuses them (PostgreSQL 15+)', async (t) => {
    if (major() < 15) { t.skip('publication column lists need PostgreSQL 15+'); return; }
    const p = await fresh();
    await ddlBoth(p, `CREATE TABLE dcl (id int PRIMARY KEY, a text, b text)`);
    await p.src.unsafe(`CREATE PUBLICATION p_a FOR TABLE dcl (id, a), ${MARKER}; CREATE PUBLICATION p_b FOR TABLE dcl (id, b)`);
    const engine = startEngine(scope, parseConfig(configInput(p, { name: 'dcl', publication: ['p_a', 'p_b'] })));
    await engine.done;
    assert.ok(engine.error instanceof PgtideError, `a PgtideError; got ${String(engine.error)}`);
    assert.equal(engine.error.code, 'UNSUPPORTED_OBJECT');
    assert.match(engine.error.message, /"public"\."dcl" is published with different column lists by the publications p_a, p_b/);
  });

  it('several publications (any major): the stream and the copy follow every one of them', async () => {
    const p = await fresh();
    await ddlBoth(p, `CREATE TABLE pa (id int PRIMARY KEY, v text); CREATE TABLE pb (id int PRIMARY KEY, v text); CREATE TABLE pc (id int PRIMARY KEY)`);
    await p.src.unsafe(`
      INSERT INTO pa VALUES (1, 'a'); INSERT INTO pb VALUES (1, 'b'); INSERT INTO pc VALUES (1);
      CREATE PUBLICATION pub_a FOR TABLE pa, ${MARKER};
      CREATE PUBLICATION pub_b FOR TABLE pb;`);
    const engine = await startStreaming(scope, p, { name: 'twopubs', publication: ['pub_a', 'pub_b'] });
    await p.src.unsafe(`INSERT INTO pa VALUES (2, 'a2'); INSERT INTO pb VALUES (2, 'b2'); INSERT INTO pc VALUES (2)`);
    await waitForCatchUp(p, { engine });
    assert.deepEqual(await rows(p, `SELECT id || v AS r FROM pa ORDER BY id`), ['1a', '2a2']);
    assert.deepEqual(await rows(p, `SELECT id || v AS r FROM pb ORDER BY id`), ['1b', '2b2']);
    assert.deepEqual(await rows(p, `SELECT count(*) AS r FROM pc`), ['0'], 'a table in neither publication is not replicated');
    await engine.stop();
  });

  it('column lists: withheld values never reach the target, and a target without the column works (PostgreSQL 15+)', async (t) => {
    if (major() < 15) { t.skip('publication column lists need PostgreSQL 15+'); return; }
    const p = await fresh();
    await p.src.unsafe(`CREATE TABLE cl (id int PRIMARY KEY, a text, secret text); CREATE TABLE narrow (id int PRIMARY KEY, a text, secret text)`);
    await p.dst.unsafe(`CREATE TABLE cl (id int PRIMARY KEY, a text, secret text); CREATE TABLE narrow (id int PRIMARY KEY, a text)`);
    // Without a column list and without publish_generated_columns, a generated column is not published: the target computes its own.
    await ddlBoth(p, `CREATE TABLE gk (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED)`);
    await p.src.unsafe(`
      INSERT INTO cl SELECT g, 'a' || g, 'hidden' || g FROM generate_series(1, 5) g;
      INSERT INTO narrow SELECT g, 'a' || g, 'hidden' || g FROM generate_series(1, 5) g;
      INSERT INTO gk (id, a) VALUES (1, 1);
      CREATE PUBLICATION p_cl FOR TABLE cl (id, a), narrow (id, a), gk, ${MARKER};`);
    const engine = await startStreaming(scope, p, { name: 'cl', publication: 'p_cl' });
    await p.src.unsafe(`INSERT INTO cl VALUES (6, 'a6', 'hidden6'); INSERT INTO narrow VALUES (6, 'a6', 'hidden6')`);
    await waitForCatchUp(p, { engine });
    assert.deepEqual(await rows(p, `SELECT count(*) AS r FROM cl WHERE secret IS NOT NULL`), ['0'], 'no withheld value on the target');
    assert.deepEqual(await rows(p, `SELECT string_agg(id || a, ',' ORDER BY id) AS r FROM cl`), ['1a1,2a2,3a3,4a4,5a5,6a6']);
    assert.deepEqual(await rows(p, `SELECT string_agg(id || a, ',' ORDER BY id) AS r FROM narrow`), ['1a1,2a2,3a3,4a4,5a5,6a6']);
    assert.deepEqual(await rows(p, `SELECT id || ':' || b AS r FROM gk`), ['1:2']);
    await engine.stop();
  });

  it('published generated columns reach plain target columns in copied rows (PostgreSQL 18)', async (t) => {
    if (major() < 18) { t.skip('publishing generated columns needs PostgreSQL 18'); return; }
    const p = await fresh();
    await p.src.unsafe(`
      CREATE TABLE gstored (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED);
      CREATE TABLE glisted (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 3) STORED);`);
    await p.dst.unsafe(`CREATE TABLE gstored (id int PRIMARY KEY, a int, b int); CREATE TABLE glisted (id int PRIMARY KEY, a int, b int)`);
    await p.src.unsafe(`
      INSERT INTO gstored (id, a) SELECT g, g FROM generate_series(1, 3) g;
      INSERT INTO glisted (id, a) SELECT g, g FROM generate_series(1, 3) g;
      CREATE PUBLICATION p_gen FOR TABLE gstored, ${MARKER} WITH (publish_generated_columns = stored);
      CREATE PUBLICATION p_glist FOR TABLE glisted (id, a, b);`);
    // Two publications: the one with a column list names a generated column without publish_generated_columns.
    const engine = await startStreaming(scope, p, { name: 'gen', publication: ['p_gen', 'p_glist'] });
    await p.src.unsafe(`INSERT INTO gstored (id, a) VALUES (4, 4); INSERT INTO glisted (id, a) VALUES (4, 4)`);
    await waitForCatchUp(p, { engine });
    assert.deepEqual(await rows(p, `SELECT string_agg(id || ':' || coalesce(b::text, 'null'), ',' ORDER BY id) AS r FROM gstored`), ['1:2,2:4,3:6,4:8']);
    assert.deepEqual(await rows(p, `SELECT string_agg(id || ':' || coalesce(b::text, 'null'), ',' ORDER BY id) AS r FROM glisted`), ['1:3,2:6,3:9,4:12']);
    await engine.stop();

    // A published generated column into a generated target column: refused, as the built-in subscriber refuses it.
    const q = await fresh();
    await ddlBoth(q, `CREATE TABLE gboth (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED)`);
    await q.src.unsafe(`INSERT INTO gboth (id, a) VALUES (1, 1); CREATE PUBLICATION p_gboth FOR TABLE gboth, ${MARKER} WITH (publish_generated_columns = stored)`);
    const refused = startEngine(scope, parseConfig(configInput(q, { name: 'gboth', publication: 'p_gboth' })));
    await refused.done;
    assert.ok(refused.error instanceof PgtideError, `a PgtideError; got ${String(refused.error)}`);
    assert.equal(refused.error.code, 'COLUMN_MISMATCH');
    assert.match(refused.error.message, /"public"\."gboth": column "b" is published as a generated column .* make it a plain column on the target or stop publishing it/);
  });

  it('keeps rows that exist only on the target; copy.truncateFirst empties the table first', async () => {
    const keep = await fresh();
    const empty = await fresh();
    for (const p of [keep, empty]) {
      await ddlBoth(p, `CREATE TABLE local (id int PRIMARY KEY, v text); CREATE INDEX local_v ON local (v)`);
      await p.src.unsafe(`INSERT INTO local SELECT g, 'source' FROM generate_series(1, 100) g`);
      await p.dst.unsafe(`INSERT INTO local SELECT g, 'local' FROM generate_series(1001, 1010) g`);
    }
    const kept = await startStreaming(scope, keep, { name: 'keep', tables: ['public.local'] });
    assert.deepEqual(await rows(keep, `SELECT v || ':' || count(*) AS r FROM local GROUP BY v ORDER BY v`), ['local:10', 'source:100']);
    // 'ready' was written by the very transaction that wrote the copied rows: a crash leaves both or neither.
    assert.deepEqual(
      await rows(keep, `SELECT (SELECT string_agg(DISTINCT xmin::text, ',') FROM local WHERE v = 'source') = (SELECT xmin::text FROM pgtide.table_state WHERE subscription = 'keep' AND table_name = 'local' AND state = 'ready') AS r`),
      ['true']);
    await kept.stop();
    const emptied = await startStreaming(scope, empty, { name: 'trunc', tables: ['public.local'], copy: { truncateFirst: true } });
    assert.deepEqual(await rows(empty, `SELECT v || ':' || count(*) AS r FROM local GROUP BY v ORDER BY v`), ['source:100']);
    await emptied.stop();
  });

  it('a copy killed (kill -9) and retried keeps the local rows and duplicates nothing, whole tables and ctid ranges alike', async () => {
    const p = await fresh();
    // No primary key: a duplicated row would not be refused, so it would show.
    await ddlBoth(p, `
      CREATE TABLE kbig (id int, pad text);
      CREATE TABLE ksmall_1 (id int, pad text); CREATE TABLE ksmall_2 (id int, pad text); CREATE TABLE ksmall_3 (id int, pad text);`);
    await p.src.unsafe(`
      INSERT INTO kbig SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 200000) g;
      INSERT INTO ksmall_1 SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g;
      INSERT INTO ksmall_2 SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g;
      INSERT INTO ksmall_3 SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g;`);
    await p.dst.unsafe(`INSERT INTO ksmall_2 VALUES (-1, 'local'), (-2, 'local')`);
    const tables = ['public.kbig', 'public.ksmall_1', 'public.ksmall_2', 'public.ksmall_3'];
    const configFile = writeConfigFile(scope, cliConfig(p, { name: 'kill', tables, copy: { parallelism: 2, splitThresholdBytes: '4MB' } }));
    const states = async () => {
      const r = await p.dst.unsafe<{ t: string; state: string }[]>(`SELECT table_name AS t, state FROM pgtide.table_state WHERE subscription = 'kill'`).catch(() => []);
      return new Map(r.map((x) => [x.t, x.state]));
    };
    const kbigPartial = async () => (await states()).get('kbig') === 'copying' && (await rows(p, `SELECT EXISTS (SELECT 1 FROM kbig) AS r`))[0] === 'true';
    // Kill 1: once some of kbig's ranges have committed (it is split: 4MB threshold), kill 2:
    // after a first table is ready while others are not.
    const moments = [
      { what: 'kbig partly copied', reached: kbigPartial },
      { what: 'a table ready, another not', reached: async () => { const v = [...(await states()).values()]; return v.includes('ready') && v.some((x) => x !== 'ready'); } },
    ];
    for (const moment of moments) {
      const child = startCli(scope, ['start', '--config', configFile]);
      await waitFor(moment.what, async () => ((await moment.reached()) ? true : undefined),
        { timeoutMs: 120_000, intervalMs: 5, failFast: () => (child.exitCode !== undefined ? new Error(`pgtide exited early:\n${child.stderrTail()}`) : undefined) });
      child.kill('SIGKILL');
      await child.exited;
      if (moment === moments[0]) assert.ok(await kbigPartial(), 'killed while kbig held some of its ranges and was not ready');
    }
    const child = startCli(scope, ['start', '--config', configFile]);
    await child.waitForStderr(/streaming started/, 180_000);
    await waitForCatchUp(p, { cli: child, timeoutMs: 120_000 });
    for (const table of ['kbig', 'ksmall_1', 'ksmall_2', 'ksmall_3']) {
      const expected = (await texts(p.src, `SELECT count(*) || '/' || count(DISTINCT id) AS r FROM ${table}`))[0]!;
      const local = table === 'ksmall_2' ? 2 : 0;
      const [got] = await rows(p, `SELECT (count(*) - ${local}) || '/' || (count(DISTINCT id) - ${local}) AS r FROM ${table}`);
      assert.equal(got, expected, `${table}: rows/distinct ids on the target (local rows excluded) match the source`);
    }
    assert.deepEqual(await rows(p, `SELECT id AS r FROM ksmall_2 WHERE pad = 'local' ORDER BY id`), ['-2', '-1'], 'local rows kept');
    child.kill('SIGTERM');
    await child.exited;
  });
});
