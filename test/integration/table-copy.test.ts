import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type postgres from 'postgres';
import { Cluster, defaultMajor, freePort } from '../../src/harness/cluster.js';
import { copyTables } from '../../src/copy/table-copy.js';
import { PgtideError } from '../../src/core/errors.js';
import { createProgressReporter } from '../../src/control/progress.js';
import type { CopyProgress, CopyTableSpec } from '../../src/copy/copy-options.js';

const MIXED: CopyTableSpec = { schema: 'Mixed "Schema" ü', name: 'Tablé "x" y' };
const t = (name: string): CopyTableSpec => ({ schema: 'public', name });
const ALL: readonly CopyTableSpec[] = [MIXED, t('gen'), t('big'), t('toasty'), t('empty'), t('parent'), t('child'), t('types')];

const SCHEMA = `
  create schema "Mixed ""Schema"" ü";
  create type mood as enum ('sad', 'ok', 'happy ü');
  create table "Mixed ""Schema"" ü"."Tablé ""x"" y" (id int primary key, "Näme ""q""" text, "with space" int, mood mood, moods mood[]);
  create table gen (id int primary key, a int not null, b int generated always as (a * 2) stored);
  create table big (id int primary key, payload text not null);
  create table toasty (id int primary key, body text not null);
  create table empty (id int primary key);
  create table parent (id int primary key, note text);
  create table child (id int primary key, parent_id int not null references parent (id), v text);
  create table types (id int primary key, d date, ts timestamptz, tsn timestamp, iv interval, f8 float8, num numeric,
                      m money, b bytea, j jsonb, arr text[], t text);
`;

/** Rows added by load(from, to): every table gets rows with ids in [from, to). */
async function load(sql: postgres.Sql, from: number, to: number): Promise<void> {
  await sql.unsafe(`
    insert into "Mixed ""Schema"" ü"."Tablé ""x"" y"
      select i, case when i % 7 = 0 then null else 'ü ' || i || E' tab\\there\\nnewline \\\\ back "q" ''s' end, i * 3,
        (enum_range(null::mood))[1 + i % 3], enum_range(null::mood)
      from generate_series(${from}, ${to} - 1) i;
    insert into gen (id, a) select i, i + 1 from generate_series(${from}, ${to} - 1) i;
    insert into big select i, 'x' || md5(i::text) from generate_series(${from} * 60, ${to} * 60 - 1) i;
    insert into toasty select i, (select string_agg(md5(i::text || ':' || g), '') from generate_series(1, 4000) g)
      from generate_series(${from}, ${from} + 2) i;
    insert into parent select i, 'p' || i from generate_series(${from}, ${to} - 1) i;
    insert into child select i, i, 'c' || i from generate_series(${from}, ${to} - 1) i;
    insert into types select i, date '2024-03-04' + i, timestamptz '2024-03-04 05:06:07.123456+02' + i * interval '1 hour',
        timestamp '2024-12-31 23:59:59' - i * interval '1 minute', interval '1 year 2 mons 3 days 04:05:06.789' * i,
        0.1 * i + 0.2, 12345678901234567890.123456789 / i, 1234.56 * i, decode(lpad(to_hex(i), 8, '0'), 'hex'),
        jsonb_build_object('k', i, 's', 'a"b\\c'), array['a,b', 'q"x', null, '{}'], E'\\\\x' || i
      from generate_series(${from}, ${to} - 1) i;
  `);
}

/** A session whose text output does not depend on the database's DateStyle and friends. */
function normalized(cluster: Cluster): postgres.Sql {
  return cluster.sql('postgres', { connection: { datestyle: 'ISO, MDY', intervalstyle: 'postgres', timezone: 'UTC', extra_float_digits: '3' } });
}

async function checksums(cluster: Cluster, tables: readonly CopyTableSpec[]): Promise<Map<string, { n: number; h: string }>> {
  const sql = normalized(cluster);
  try {
    const out = new Map<string, { n: number; h: string }>();
    for (const spec of tables) {
      const q = `"${spec.schema.replace(/"/g, '""')}"."${spec.name.replace(/"/g, '""')}"`;
      const [row] = await sql.unsafe<{ n: number; h: string }[]>(`select count(*)::int as n, md5(coalesce(string_agg(t::text, ',' order by t.id), '')) as h from ${q} t`);
      out.set(`${spec.schema}.${spec.name}`, row!);
    }
    return out;
  } finally {
    await sql.end();
  }
}

/** `name: definition` of every index of a public table. */
async function indexesOf(cluster: Cluster, table: string): Promise<string[]> {
  const sql = cluster.sql();
  try {
    const rows = await sql<{ indexname: string; indexdef: string }[]>`select indexname, indexdef from pg_indexes where schemaname = 'public' and tablename = ${table} order by indexname`;
    return rows.map((r) => `${r.indexname}: ${r.indexdef}`);
  } finally {
    await sql.end();
  }
}

async function copySessions(cluster: Cluster): Promise<number> {
  const sql = cluster.sql();
  try {
    // A backend goes away a moment after its client closed the socket.
    for (let i = 0; ; i++) {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where application_name = 'pgtide-copy'`;
      if (row!.n === 0 || i >= 40) return row!.n;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await sql.end();
  }
}

describe('initial table copy', () => {
  let source: Cluster;
  let target: Cluster;

  before(async () => {
    [source, target] = await Promise.all([
      Cluster.start({ major: defaultMajor(), name: 'copy-src' }),
      Cluster.start({ major: defaultMajor(), name: 'copy-dst' }),
    ]);
    const s = source.sql();
    const d = target.sql();
    try {
      await s.unsafe(`${SCHEMA}
        create table only_on_source (id int primary key);
        create table extra (id int primary key, only_here text);
        insert into extra select i, 'x' from generate_series(1, 10) i;
        create table strict (id int primary key, v int);
        insert into strict select i, i from generate_series(1, 99) i;
        insert into strict values (100, 100);
        create table indexed (id int primary key, a int, b text, c int);
        insert into indexed select i, i % 50, 'b' || i, i from generate_series(1, 3000) i;`);
      // Shifts the OIDs of the target's own types, as between real clusters; with
      // its user-defined mood columns the mixed table goes through in text under 'auto'.
      await d.unsafe(`create type shift_oids as (a int); ${SCHEMA} create table strict (id int primary key, v int check (v < 100));
                       create index strict_v on strict (v);
                       create table indexed (id int primary key, a int, b text, c int);
                       create index "Indexed A" on indexed (a);
                       create index indexed_lower_b on indexed (lower(b)) where a > 10;
                       create unique index indexed_c on indexed (c);
                       create index indexed_b_commented on indexed (b);
                       comment on index indexed_b_commented is 'kept in place: a rebuild would lose the comment';
                       create table extra (id int primary key);`);
      // Defaults that change the text form of values, different on each side: the copy must not depend on them.
      await s.unsafe(`alter database postgres set datestyle = 'SQL, DMY'; alter database postgres set intervalstyle = 'sql_standard';
                      alter database postgres set timezone = 'Asia/Tokyo'; alter database postgres set extra_float_digits = 0`);
      await d.unsafe(`alter database postgres set datestyle = 'German'; alter database postgres set intervalstyle = 'iso_8601';
                      alter database postgres set timezone = 'America/New_York'`);
      await load(s, 1, 501);
      await s`analyze`;
    } finally {
      await Promise.all([s.end(), d.end()]);
    }
  });

  after(async () => {
    await Promise.all([source?.destroy(), target?.destroy()]);
  });

  it('copies every table as of the snapshot, splitting the big one, with progress', async () => {
    const expected = await checksums(source, ALL);
    const snapshot = await source.exportSnapshot();
    const s = source.sql();
    let released: Promise<void> | undefined;
    try {
      // Committed after the snapshot: must not be copied.
      await load(s, 501, 601);
      const started: string[] = [];
      const done = new Map<string, number>();
      let last: readonly CopyProgress[] = [];
      let progressCalls = 0;
      const result = await copyTables({
        sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: ALL,
        parallelism: 2, splitThresholdBytes: 256 * 1024,
        // The exporter may go away once every worker holds the snapshot.
        onSnapshotsImported: () => { released = snapshot.release(); },
        onTableStart: async (spec) => { started.push(`${spec.schema}.${spec.name}`); },
        onTableDone: async (spec, rows) => { done.set(`${spec.schema}.${spec.name}`, rows); },
        onProgress: (p) => { last = p; progressCalls++; },
      });
      assert.ok(released, 'onSnapshotsImported was called');
      await released;

      const actual = await checksums(target, ALL);
      assert.deepEqual(actual, expected);
      const totalRows = [...expected.values()].reduce((sum, x) => sum + x.n, 0);
      assert.equal(result.rows, totalRows);
      assert.ok(result.bytes > 1_500_000, `bytes ${result.bytes}`);

      assert.deepEqual([...started].sort(), ALL.map((x) => `${x.schema}.${x.name}`).sort(), 'onTableStart once per table');
      for (const [table, rows] of done) assert.equal(rows, expected.get(table)!.n, table);
      assert.equal(done.size, ALL.length);
      assert.ok(progressCalls >= ALL.length * 2);
      assert.equal(last.length, ALL.length);
      for (const p of last) {
        assert.equal(p.done, true, p.table);
        assert.equal(p.rows, expected.get(p.table)!.n, p.table);
        assert.ok(p.startedAt > 0);
      }
      assert.ok(last.find((p) => p.table === 'public.big')!.estimatedRows > 20_000, 'estimates come from reltuples');

      const d = target.sql();
      try {
        // Ranges commit separately; a whole table is one transaction.
        const [big] = await d<{ n: number }[]>`select count(distinct xmin::text)::int as n from big`;
        assert.ok(big!.n > 2, `big copied in ${big!.n} transactions`);
        const [mixed] = await d.unsafe<{ n: number }[]>(`select count(distinct xmin::text)::int as n from "Mixed ""Schema"" ü"."Tablé ""x"" y"`);
        assert.equal(mixed!.n, 1);
        const [late] = await d<{ n: number }[]>`select count(*)::int as n from gen where id >= 501`;
        assert.equal(late!.n, 0);
      } finally {
        await d.end();
      }
      assert.equal(await copySessions(source), 0);
      assert.equal(await copySessions(target), 0);
    } finally {
      await s.end();
      if (!released) await snapshot.release();
    }
  });

  it('with truncateFirst, replaces the rows of a repeated copy instead of duplicating them (text format)', async () => {
    // Text format throughout: the types table checks the pinned DateStyle & co.
    const tables = [MIXED, t('big'), t('parent'), t('child'), t('types'), t('gen')];
    const expected = await checksums(source, tables);
    const snapshot = await source.exportSnapshot();
    try {
      // parent is referenced by child's foreign key: it cannot be truncated alone.
      for (let i = 0; i < 2; i++) {
        await copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables, parallelism: 2, splitThresholdBytes: 256 * 1024, format: 'text', truncateFirst: true });
      }
    } finally {
      await snapshot.release();
    }
    assert.deepEqual(await checksums(target, tables), expected);
    assert.equal(expected.get('public.parent')!.n, 600);
  });

  it('drops plain secondary indexes for the copy and builds them again; leaves the others in place', async () => {
    const before = await indexesOf(target, 'indexed');
    assert.equal(before.length, 5);
    const expected = await checksums(source, [t('indexed')]);
    const snapshot = await source.exportSnapshot();
    const rebuilt: string[] = [];
    try {
      await copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [t('indexed')], parallelism: 1, onIndexBuild: (_t, index) => rebuilt.push(index) });
      // Off: nothing is dropped.
      await copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [t('indexed')], parallelism: 1, truncateFirst: true, rebuildIndexes: false, onIndexBuild: (_t, index) => rebuilt.push(`off: ${index}`) });
      // Rows already on the target (the copy above): they are kept, so nothing is dropped either.
      await assert.rejects(
        copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [t('indexed')], parallelism: 1, onIndexBuild: (_t, index) => rebuilt.push(`kept rows: ${index}`) }),
        (error: unknown) => error instanceof PgtideError && error.code === 'COPY_CONFLICT' && /truncateFirst/.test(error.message),
      );
    } finally {
      await snapshot.release();
    }
    assert.deepEqual(rebuilt, ['public."Indexed A"', 'public.indexed_lower_b']);
    assert.deepEqual(await indexesOf(target, 'indexed'), before);
    assert.deepEqual(await checksums(target, [t('indexed')]), expected);
  });

  it('names a table missing on the target and how to create it, before touching any table', async () => {
    const before = await checksums(target, [MIXED]);
    const snapshot = await source.exportSnapshot();
    let started = 0;
    try {
      await assert.rejects(
        copyTables({
          sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [MIXED, t('only_on_source')], parallelism: 2,
          onTableStart: async () => { started++; },
        }),
        (error: unknown) => {
          assert.ok(error instanceof PgtideError);
          assert.equal(error.code, 'TABLE_MISSING_ON_TARGET');
          assert.match(error.message, /"public"\."only_on_source"/);
          assert.match(error.message, /pgtide schema copy/);
          assert.ok(!error.message.includes(source.password) && !error.message.includes(target.password));
          return true;
        },
      );
    } finally {
      await snapshot.release();
    }
    assert.equal(started, 0);
    assert.deepEqual(await checksums(target, [MIXED]), before);
  });

  it('refuses a column the target lacks, and copies the columns it is told to', async () => {
    const snapshot = await source.exportSnapshot();
    try {
      await assert.rejects(
        copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [t('extra')] }),
        (error: unknown) => error instanceof PgtideError && error.code === 'COLUMN_MISMATCH' && error.message.includes('"public"."extra": column "only_here" does not exist on the target'),
      );
      const result = await copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [{ schema: 'public', name: 'extra', columns: ['id'] }] });
      assert.equal(result.rows, 10);
    } finally {
      await snapshot.release();
    }
  });

  it('fails promptly when the target rejects the last row, leaving nothing open', { timeout: 60_000 }, async () => {
    const snapshot = await source.exportSnapshot();
    try {
      await assert.rejects(
        copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [t('strict')], parallelism: 1 }),
        (error: unknown) => {
          assert.ok(error instanceof PgtideError);
          assert.equal(error.sqlState, '23514');
          assert.match(error.message, /"public"\."strict"/);
          return true;
        },
      );
    } finally {
      await snapshot.release();
    }
    assert.deepEqual([...(await checksums(target, [t('strict')])).values()][0]!.n, 0);
    // The index dropped for the copy came back with the rollback.
    assert.deepEqual((await indexesOf(target, 'strict')).map((i) => i.split(':')[0]), ['strict_pkey', 'strict_v']);
    assert.equal(await copySessions(source), 0);
    assert.equal(await copySessions(target), 0);
  });

  it('stops on abort and closes its connections', async () => {
    const snapshot = await source.exportSnapshot();
    const controller = new AbortController();
    try {
      await assert.rejects(
        copyTables({
          sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: ALL, parallelism: 2,
          signal: controller.signal, onTableStart: async () => { controller.abort(); },
        }),
        (error: unknown) => error instanceof PgtideError && error.code === 'SHUTDOWN',
      );
    } finally {
      await snapshot.release();
    }
    assert.equal(await copySessions(source), 0);
    assert.equal(await copySessions(target), 0);
  });

  it('reports an unreachable target without its password', async () => {
    const snapshot = await source.exportSnapshot();
    const port = await freePort();
    try {
      await assert.rejects(
        copyTables({ sourceUrl: source.url, targetUrl: `postgres://postgres:s3cret-pw@127.0.0.1:${port}/postgres`, snapshotName: snapshot.name, tables: [t('gen')] }),
        (error: unknown) => error instanceof PgtideError && error.code === 'CONNECTION_FAILED' && /target/.test(error.message) && !error.message.includes('s3cret-pw'),
      );
    } finally {
      await snapshot.release();
    }
    assert.equal(await copySessions(source), 0);
  });

  it('explains a snapshot that can no longer be imported', async () => {
    const snapshot = await source.exportSnapshot();
    await snapshot.release();
    await assert.rejects(
      copyTables({ sourceUrl: source.url, targetUrl: target.url, snapshotName: snapshot.name, tables: [t('gen')], parallelism: 2 }),
      (error: unknown) => error instanceof PgtideError && error.code === 'REPLICATION_STREAM_LOST' && /replication connection/.test(error.message),
    );
    assert.equal(await copySessions(source), 0);
  });
});

describe('progress reporter', () => {
  const table = (over: Partial<CopyProgress>): CopyProgress => ({
    table: 'public.big', rows: 0, bytes: 0, estimatedRows: 1000, estimatedBytes: 1_000_000, done: false, startedAt: 1_000, ...over,
  });

  it('logs plain lines when not on a terminal', () => {
    const lines: string[] = [];
    const reporter = createProgressReporter({ stream: { write: () => true }, logger: (l) => lines.push(l), now: () => 3_000 });
    reporter.update([table({ rows: 500, bytes: 500_000 }), table({ table: 'public.small', startedAt: 0, estimatedRows: 0 })]);
    reporter.update([table({ rows: 1000, bytes: 1_000_000, done: true }), table({ table: 'public.small', startedAt: 0, estimatedRows: 0 })]);
    reporter.finish();
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^copied public\.big {2}1,000 rows {2}1\.0 MB {2}100% {2}0\.5 MB\/s {2}done in 0:02$/);
    assert.match(lines[1]!, /1\/2 tables done · 1,000 rows · 1\.0 MB/);
  });

  it('redraws a block in place on a terminal', () => {
    let out = '';
    const reporter = createProgressReporter({ stream: { isTTY: true, columns: 100, write: (s: string) => { out += s; return true; } }, now: () => 11_000 });
    reporter.update([table({ rows: 250, bytes: 250_000 })]);
    reporter.finish();
    assert.match(out, /public\.big {2}250 rows {2}0\.3 MB {2} 25% {2}0\.0 MB\/s {2}ETA 0:30/);
    assert.ok(out.includes('\x1b[2F'), 'moved back over the two lines drawn first');
  });
});
