/**
 * DDL replication, part 4: partitions (created, attached with rows and
 * re-copied with their own sync LSN, detached; a new partitioned table and
 * its first partitions; publish_via_partition_root both ways), and the
 * objects around replicated tables: ALTER SEQUENCE, comments, materialized
 * views, grants. One cluster pair, one database per case; rows before and
 * after each change in the same transaction.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TestScope, startPair, databasePair, ddlBoth, startEngine, startStreaming, waitForCatchUp, assertTablesEqual, texts,
  capturingLogger, withTimeout, configInput, waitFor, type Pair,
} from '../support/replication.js';
import { parseConfig } from '../../src/control/config.js';

const SYNC = (table: string) => `SELECT state || ' ' || coalesce(sync_lsn::text, '-') AS r FROM pgtide.table_state WHERE table_name = '${table}'`;

/** Columns of the tables, in order, with their types: the same on both sides. */
async function assertColumnsEqual(pair: Pair, tables: readonly string[]): Promise<void> {
  const q = `SELECT attrelid::regclass::text || ' ' || string_agg(attname || ':' || format_type(atttypid, atttypmod) || (CASE WHEN attnotnull THEN '!' ELSE '' END), ',' ORDER BY attnum) AS r
               FROM pg_attribute WHERE attrelid = ANY ($1::regclass[]) AND attnum > 0 AND NOT attisdropped GROUP BY attrelid ORDER BY 1`;
  const list = `{${tables.join(',')}}`;
  assert.deepEqual(await texts(pair.dst, q, [list]), await texts(pair.src, q, [list]));
}

/** Each partition with its parent and bound. */
const PARTITIONS = `SELECT c.relname || ' of ' || coalesce((SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhrelid = c.oid), '-')
                           || ' ' || coalesce(pg_get_expr(c.relpartbound, c.oid), '-') AS r
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'pgtide_test_marker' AND c.relname !~ '^other' ORDER BY 1`;

describe('DDL replication: partitions, sequences, comments, materialized views, grants', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let base: Pair;

  before(async () => {
    base = await startPair(scope, { name: 'ddlpart' });
  });
  after(() => scope.cleanup());

  it('partitions published under their own names: created, attached with rows (re-copied alone), detached (kept, no longer replicated); a new partitioned table and its first partitions', async () => {
    const pair = await databasePair(scope, base, 'ddl_parts');
    await ddlBoth(pair, `CREATE TABLE m (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
                         CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (100);`);
    await pair.src.unsafe(`INSERT INTO m SELECT g, 'v' || g FROM generate_series(1, 20) g`);
    // A table outside the publication, with rows, that will be attached (the target does not have it).
    await pair.src.unsafe(`CREATE TABLE m3 (id int PRIMARY KEY, v text); INSERT INTO m3 SELECT g, 'm3-' || g FROM generate_series(200, 230) g`);
    // A partitioned table outside the publication (and absent from the target).
    await pair.src.unsafe(`CREATE TABLE other (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)`);
    const { lines, logger } = capturingLogger();
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, tables: ['public.m'], ddl: { capture: true } })), {}, logger);
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    assert.deepEqual(await texts(pair.dst, SYNC('m1')).then((r) => r.map((x) => x.split(' ')[0])), ['ready']);

    // CREATE TABLE … PARTITION OF, rows before and after it in the same transaction.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO m VALUES (21, 'before')`);
      await tx.unsafe(`CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (100) TO (200)`);
      await tx.unsafe(`INSERT INTO m VALUES (150, 'in m2'), (151, 'in m2 too')`);
    });
    // ATTACH PARTITION of a table with rows: created on the target and copied with its own snapshot.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO m VALUES (22, 'before attach')`);
      await tx.unsafe(`ALTER TABLE m ATTACH PARTITION m3 FOR VALUES FROM (200) TO (300)`);
      await tx.unsafe(`INSERT INTO m VALUES (250, 'after attach')`);
      await tx.unsafe(`UPDATE m SET v = 'changed' WHERE id IN (201, 152 - 1)`);
    });
    await pair.src.unsafe(`INSERT INTO m VALUES (260, 'later'); DELETE FROM m WHERE id = 202`);
    const m3 = await waitFor('m3 copied', async () => {
      const r = await texts(pair.dst, SYNC('m3'));
      return r[0]?.startsWith('ready ') ? r : undefined;
    }, { timeoutMs: 60_000 });
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    for (const t of ['public.m', 'public.m1', 'public.m2', 'public.m3']) await assertTablesEqual(pair, t);
    assert.deepEqual(await texts(pair.dst, PARTITIONS), await texts(pair.src, PARTITIONS));
    assert.equal(lines.filter((l) => l.includes('was attached with rows: copied with its own snapshot')).length, 1, 'm3 copied once');
    const m2 = await texts(pair.dst, SYNC('m2'));
    assert.match(m2[0]!, /^ready [0-9A-F]+\/[0-9A-F]+$/);
    assert.notEqual(m3[0], m2[0], 'm3 has a sync LSN of its own');

    // Two levels: a partitioned partition and its own partition.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`CREATE TABLE m4 PARTITION OF m FOR VALUES FROM (300) TO (400) PARTITION BY RANGE (id)`);
      await tx.unsafe(`CREATE TABLE m4a PARTITION OF m4 FOR VALUES FROM (300) TO (350)`);
      await tx.unsafe(`INSERT INTO m VALUES (310, 'deep')`);
    });
    // A change on the partitioned table recurses to its partitions: applied once, on the root.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO m VALUES (23, 'before add')`);
      await tx.unsafe(`ALTER TABLE m ADD COLUMN w int`);
      await tx.unsafe(`ALTER TABLE m RENAME COLUMN w TO w2`);
      await tx.unsafe(`CREATE INDEX m_v_idx ON m (v)`);
      await tx.unsafe(`INSERT INTO m VALUES (24, 'after add', 24), (152, 'm2', 152), (270, 'm3', 270), (311, 'deep', 311)`);
    });
    // A change to one partition only, diffed from the snapshot the root's change left.
    await pair.src.unsafe(`ALTER TABLE m2 ADD CONSTRAINT m2_w2_check CHECK (w2 IS NULL OR w2 > 0)`);
    await pair.src.unsafe(`INSERT INTO m VALUES (153, 'checked', 153)`);

    // DETACH PARTITION: kept on the target, out of the publication (it was published through the root).
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO m VALUES (25, 'before detach', 25)`);
      await tx.unsafe(`ALTER TABLE m DETACH PARTITION m1`);
      await tx.unsafe(`INSERT INTO m1 VALUES (26, 'not replicated', 26)`);
      await tx.unsafe(`INSERT INTO m VALUES (154, 'after detach', 154)`);
    });
    // CREATE TABLE … PARTITION BY and its first partitions, with rows, in one transaction.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`CREATE TABLE q (id int PRIMARY KEY, k text NOT NULL, n numeric) PARTITION BY LIST (id)`);
      await tx.unsafe(`CREATE TABLE q_a PARTITION OF q FOR VALUES IN (1, 2, 3)`);
      await tx.unsafe(`INSERT INTO q VALUES (1, 'a', 1.5), (2, 'b', NULL)`);
      await tx.unsafe(`CREATE TABLE q_b PARTITION OF q FOR VALUES IN (4, 5)`);
      await tx.unsafe(`INSERT INTO q VALUES (4, 'd', 4)`);
    });
    await pair.src.unsafe(`UPDATE q SET n = 2 WHERE id = 2; INSERT INTO q VALUES (5, 'e', 5), (3, 'c', 3)`);
    // A new partition of a table outside the scope joins as a new table (newTableSchemas), a plain one on the target.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`CREATE TABLE other_1 PARTITION OF other FOR VALUES FROM (0) TO (10)`);
      await tx.unsafe(`INSERT INTO other VALUES (1, 'one'), (2, 'two')`);
    });
    await pair.src.unsafe(`UPDATE other SET v = 'uno' WHERE id = 1`);
    await waitForCatchUp(pair, { engine });
    for (const t of ['public.m', 'public.m2', 'public.m3', 'public.m4a', 'public.q', 'public.q_a', 'public.q_b', 'public.other_1']) await assertTablesEqual(pair, t);
    await assertColumnsEqual(pair, ['public.m', 'public.m1', 'public.m2', 'public.m3', 'public.m4', 'public.m4a', 'public.q', 'public.q_a', 'public.q_b']);
    assert.deepEqual(await texts(pair.dst, PARTITIONS), await texts(pair.src, PARTITIONS));
    const indexes = `SELECT indexrelid::regclass::text || ' ' || indisvalid AS r FROM pg_index WHERE indrelid IN ('m'::regclass, 'm2'::regclass, 'm3'::regclass, 'm4'::regclass, 'm4a'::regclass, 'q_a'::regclass) ORDER BY 1`;
    assert.deepEqual(await texts(pair.dst, indexes), await texts(pair.src, indexes));
    assert.deepEqual(await texts(pair.dst, `SELECT conname AS r FROM pg_constraint WHERE conrelid = 'm2'::regclass AND contype = 'c'`), ['m2_w2_check']);
    // m1: the rows it had when detached, not the one written after.
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM m1 WHERE id = 26`), ['0']);
    assert.deepEqual(await texts(pair.dst, `SELECT string_agg(id::text, ',' ORDER BY id) AS r FROM m1`), await texts(pair.src, `SELECT string_agg(id::text, ',' ORDER BY id) AS r FROM m1 WHERE id <> 26`));
    const states = `SELECT string_agg(table_name || ':' || state, ',' ORDER BY table_name) AS r FROM pgtide.table_state WHERE table_name <> 'pgtide_test_marker'`;
    assert.deepEqual(await texts(pair.dst, states), ['m2:ready,m3:ready,m4a:ready,other_1:ready,q_a:ready,q_b:ready']);
    assert.deepEqual(await texts(pair.dst, `SELECT reason AS r FROM pgtide.ddl_unhandled`), []);

    // DROP TABLE of a partitioned table drops its partitions; pgtide forgets them all.
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO q VALUES (3, 'c', 3) ON CONFLICT (id) DO UPDATE SET k = 'cc'`);
      await tx.unsafe(`DROP TABLE q`);
    });
    await pair.src.unsafe(`INSERT INTO m VALUES (155, 'after drop', 155)`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.m');
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM pg_class WHERE relname IN ('q', 'q_a', 'q_b')`), ['0']);
    assert.deepEqual(await texts(pair.dst, states), ['m2:ready,m3:ready,m4a:ready,other_1:ready']);

    // DETACH … CONCURRENTLY runs in two source transactions; the message comes with the second.
    await pair.src.unsafe(`ALTER TABLE m DETACH PARTITION m3 CONCURRENTLY`);
    await pair.src.unsafe(`INSERT INTO m3 VALUES (280, 'not replicated', 280); INSERT INTO m VALUES (156, 'after', 156)`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.m');
    assert.deepEqual(await texts(pair.dst, PARTITIONS), await texts(pair.src, PARTITIONS));
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM m3 WHERE id = 280`), ['0']);
    assert.deepEqual(await texts(pair.dst, states), ['m2:ready,m4a:ready,other_1:ready']);
    assert.equal(engine.finished, false, 'the engine kept streaming');
    await engine.stop();
  });

  it('the default publication (no tables:) lists a partitioned table by its root: a partition created or attached later is published and replicated', async () => {
    const pair = await databasePair(scope, base, 'ddl_parts_default');
    await ddlBoth(pair, `CREATE TABLE d (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
                         CREATE TABLE d1 PARTITION OF d FOR VALUES FROM (0) TO (100);`);
    await pair.src.unsafe(`INSERT INTO d SELECT g, 'v' || g FROM generate_series(1, 10) g`);
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, ddl: { capture: true } })), {});
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    const listed = `SELECT string_agg(c.relname, ',' ORDER BY c.relname) AS r FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid
                     JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND c.relname <> 'pgtide_test_marker'`;
    assert.deepEqual(await texts(pair.src, listed, [`${pair.database}_pub`]), ['d'], 'the root is listed, not its partitions');
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO d VALUES (11, 'before')`);
      await tx.unsafe(`CREATE TABLE d2 PARTITION OF d FOR VALUES FROM (100) TO (200)`);
      await tx.unsafe(`INSERT INTO d VALUES (150, 'in d2'), (12, 'after')`);
    });
    await pair.src.unsafe(`UPDATE d SET v = 'changed' WHERE id IN (1, 150); DELETE FROM d WHERE id = 2`);
    await waitForCatchUp(pair, { engine });
    for (const t of ['public.d', 'public.d1', 'public.d2']) await assertTablesEqual(pair, t);
    assert.deepEqual(await texts(pair.dst, PARTITIONS), await texts(pair.src, PARTITIONS));
    await engine.stop();
  });

  it('partitions published via the root (publish_via_partition_root): a new partition takes rows at once; a table attached with rows re-copies the root', async () => {
    const pair = await databasePair(scope, base, 'ddl_parts_root');
    await ddlBoth(pair, `CREATE TABLE r (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
                         CREATE TABLE r1 PARTITION OF r FOR VALUES FROM (0) TO (100);`);
    await pair.src.unsafe(`CREATE PUBLICATION via_root FOR TABLE r, pgtide_test_marker WITH (publish_via_partition_root = true)`);
    await pair.src.unsafe(`INSERT INTO r SELECT g, 'v' || g FROM generate_series(1, 10) g`);
    await pair.src.unsafe(`CREATE TABLE r3 (id int PRIMARY KEY, v text); INSERT INTO r3 SELECT g, 'r3-' || g FROM generate_series(200, 210) g`);
    const { lines, logger } = capturingLogger();
    const engine = startEngine(scope, parseConfig(configInput(pair, { name: pair.database, publication: 'via_root', ddl: { capture: true } })), {}, logger);
    await withTimeout(engine.streaming, 120_000, 'engine did not reach streaming');
    const copiedAt = await texts(pair.dst, SYNC('r'));

    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO r VALUES (11, 'before')`);
      await tx.unsafe(`CREATE TABLE r2 PARTITION OF r FOR VALUES FROM (100) TO (200)`);
      await tx.unsafe(`INSERT INTO r VALUES (150, 'in r2')`);
    });
    await pair.src.unsafe(`UPDATE r SET v = 'moved' WHERE id = 150`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.r');
    await assertTablesEqual(pair, 'public.r2');
    assert.deepEqual(await texts(pair.dst, SYNC('r')), copiedAt, 'a new empty partition needs no copy');

    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO r VALUES (12, 'before attach')`);
      await tx.unsafe(`ALTER TABLE r ATTACH PARTITION r3 FOR VALUES FROM (200) TO (300)`);
      await tx.unsafe(`INSERT INTO r VALUES (250, 'after attach')`);
    });
    await pair.src.unsafe(`UPDATE r SET v = 'upd' WHERE id = 205`);
    await waitFor('r copied again', async () => {
      const now = await texts(pair.dst, SYNC('r'));
      return now[0]?.startsWith('ready ') && now[0] !== copiedAt[0] ? now : undefined;
    }, { timeoutMs: 60_000 });
    await waitForCatchUp(pair, { engine, timeoutMs: 120_000 });
    for (const t of ['public.r', 'public.r1', 'public.r2', 'public.r3']) await assertTablesEqual(pair, t);
    assert.deepEqual(await texts(pair.dst, PARTITIONS), await texts(pair.src, PARTITIONS));
    assert.equal(lines.filter((l) => l.includes('is copied again')).length, 1);
    assert.deepEqual(await texts(pair.dst, `SELECT string_agg(table_name, ',' ORDER BY table_name) AS r FROM pgtide.table_state`), ['pgtide_test_marker,r']);
    await engine.stop();
  });

  it('ALTER SEQUENCE of a sequence a table uses, comments, materialized views (created, refreshed, dropped) and grants on a table in scope', async () => {
    const pair = await databasePair(scope, base, 'ddl_around');
    const role = `reader_${pair.major}`;
    await Promise.all([pair.src, pair.dst].map((sql) => sql.unsafe(`DO $$ BEGIN CREATE ROLE ${role}; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)));
    await ddlBoth(pair, `CREATE TABLE t (id serial PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY);`);
    await pair.src.unsafe(`INSERT INTO t (v) SELECT 'v' || g FROM generate_series(1, 5) g`);
    // Outside the scope, and absent from the target: a grant on it must not be replayed (it would fail there).
    await pair.src.unsafe(`CREATE TABLE side (id int)`);
    const engine = await startStreaming(scope, pair, { name: pair.database, tables: ['public.t', 'public.u'], ddl: { capture: true, onError: 'stop' } });

    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO t (v) VALUES ('before')`);
      await tx.unsafe(`ALTER SEQUENCE t_id_seq INCREMENT BY 5 MAXVALUE 100000 CYCLE`);
      await tx.unsafe(`INSERT INTO t (v) VALUES ('after')`);
    });
    await pair.src.unsafe(`ALTER SEQUENCE t_id_seq RESTART WITH 1000`);
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO t (v) VALUES ('before comment')`);
      await tx.unsafe(`COMMENT ON TABLE t IS 'the t table'`);
      await tx.unsafe(`COMMENT ON COLUMN t.v IS 'it''s v'`);
      await tx.unsafe(`INSERT INTO t (v) VALUES ('after comment')`);
    });
    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO t (v) VALUES ('before view')`);
      await tx.unsafe(`CREATE MATERIALIZED VIEW t_counts AS SELECT count(*) AS n, max(id) AS top FROM t`);
      await tx.unsafe(`INSERT INTO t (v) VALUES ('after view')`);
    });
    await pair.src.unsafe(`CREATE UNIQUE INDEX t_counts_top ON t_counts (top)`);
    await pair.src.unsafe(`INSERT INTO t (v) VALUES ('not counted yet')`);
    // CONCURRENTLY needs the unique index on the target too.
    await pair.src.unsafe(`REFRESH MATERIALIZED VIEW CONCURRENTLY t_counts`);
    await pair.src.unsafe(`GRANT SELECT, INSERT ON t TO ${role}`);
    await pair.src.unsafe(`GRANT SELECT (id) ON u TO ${role}`);
    await pair.src.unsafe(`REVOKE INSERT ON t FROM ${role}`);
    await pair.src.unsafe(`GRANT SELECT ON side TO ${role}`);
    await pair.src.unsafe(`INSERT INTO t (v) VALUES ('after grants')`);
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.t');
    await assertTablesEqual(pair, 'public.t_counts');
    assert.deepEqual(await texts(pair.dst, `SELECT indexname AS r FROM pg_indexes WHERE tablename = 't_counts'`), ['t_counts_top']);
    const sequence = `SELECT increment_by || ' ' || min_value || ' ' || max_value || ' ' || cycle AS r FROM pg_sequences WHERE sequencename = 't_id_seq'`;
    assert.deepEqual(await texts(pair.src, sequence), ['5 1 100000 true']);
    assert.deepEqual(await texts(pair.dst, sequence), await texts(pair.src, sequence));
    // RESTART replayed: the target's next value is the source's (the source has used 1000 and 1005 since).
    assert.deepEqual(await texts(pair.dst, `SELECT last_value::text AS r FROM t_id_seq`), ['1000']);
    const comments = `SELECT coalesce(obj_description('t'::regclass, 'pg_class'), '-') || ' / ' || coalesce(col_description('t'::regclass, 2), '-') AS r`;
    assert.deepEqual(await texts(pair.src, comments), [`the t table / it's v`]);
    assert.deepEqual(await texts(pair.dst, comments), await texts(pair.src, comments));
    const acl = `SELECT c.relname || ' ' || coalesce(c.relacl::text, '-') || ' ' || coalesce((SELECT string_agg(a.attname || '=' || a.attacl::text, ',') FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL), '-') AS r
                   FROM pg_class c WHERE c.relname IN ('t', 'u') ORDER BY 1`;
    // The owners differ (the tables belong to different roles on each side): compare what the role holds.
    const held = `SELECT string_agg(p, ',' ORDER BY p) AS r FROM (SELECT 'table ' || table_name || ' ' || privilege_type AS p FROM information_schema.role_table_grants WHERE grantee = '${role}' AND table_name IN ('t', 'u')
                    UNION ALL SELECT 'column ' || table_name || '.' || column_name || ' ' || privilege_type FROM information_schema.role_column_grants WHERE grantee = '${role}' AND table_name = 'u') x`;
    assert.deepEqual(await texts(pair.src, held), ['column u.id SELECT,table t SELECT']);
    assert.deepEqual(await texts(pair.dst, held), await texts(pair.src, held), (await texts(pair.dst, acl)).join('\n'));

    await pair.src.begin(async (tx) => {
      await tx.unsafe(`INSERT INTO t (v) VALUES ('before drop')`);
      await tx.unsafe(`DROP MATERIALIZED VIEW t_counts`);
      await tx.unsafe(`COMMENT ON TABLE t IS NULL`);
    });
    await waitForCatchUp(pair, { engine });
    await assertTablesEqual(pair, 'public.t');
    assert.deepEqual(await texts(pair.dst, `SELECT count(*)::text AS r FROM pg_matviews WHERE matviewname = 't_counts'`), ['0']);
    assert.deepEqual(await texts(pair.dst, comments), await texts(pair.src, comments));
    assert.deepEqual(await texts(pair.dst, `SELECT reason AS r FROM pgtide.ddl_unhandled`), []);
    await engine.stop();
  });
});
