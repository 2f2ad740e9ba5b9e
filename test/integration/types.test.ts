/**
 * A corpus of data types and awkward values, replicated through the initial
 * copy and the stream, then updated (every column, and the key) and deleted:
 * keyed by primary key, by keys of many types, and under REPLICA IDENTITY FULL
 * (where every column takes part in finding the row, including types without
 * an equality operator). Comparisons use sessions with pinned DateStyle,
 * IntervalStyle, TimeZone and extra_float_digits, so they see exact values.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TestScope, startPair, databasePair, ddlBoth, startStreaming, waitForCatchUp, assertTablesEqual, texts,
  type Pair, type RunningEngine,
} from '../support/replication.js';

const TYPES_DDL = `
  CREATE EXTENSION hstore;
  CREATE EXTENSION citext;
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'très "happy", ✓');
  CREATE DOMAIN posint AS int CHECK (VALUE > 0);
  CREATE DOMAIN email AS text CHECK (VALUE ~ '@');
  CREATE TYPE pair AS (x int, y text);
`;

/** Column name and type; the same list makes the keyed and the FULL-identity table. */
const COLUMNS: readonly (readonly [string, string])[] = [
  ['i2', 'int2'], ['i4', 'int4'], ['i8', 'int8'], ['num', 'numeric'], ['nump', 'numeric(40,20)'], ['f4', 'float4'], ['f8', 'float8'],
  ['t', 'text'], ['vc', 'varchar(20)'], ['ch', 'char(5)'], ['ci', 'citext'], ['by', 'bytea'], ['b', 'bool'],
  ['d', 'date'], ['ts', 'timestamp'], ['tstz', 'timestamptz'], ['tm', 'time'], ['tmtz', 'timetz'], ['iv', 'interval'],
  ['u', 'uuid'], ['j', 'json'], ['jb', 'jsonb'], ['ai', 'int[]'], ['at', 'text[]'], ['a2', 'int[]'], ['e', 'mood'], ['ea', 'mood[]'],
  ['dpos', 'posint'], ['dmail', 'email'], ['r4', 'int4range'], ['rtz', 'tstzrange'], ['rn', 'numrange'], ['mr', 'int4multirange'],
  ['ip', 'inet'], ['net', 'cidr'], ['mac', 'macaddr'], ['m', 'money'], ['p', 'point'], ['x', 'xml'], ['bv', 'varbit'], ['bits', 'bit(4)'],
  ['comp', 'pair'], ['tsv', 'tsvector'], ['hs', 'hstore'],
];
const COLUMN_LIST = COLUMNS.map(([name]) => name).join(', ');
const COLUMN_DDL = COLUMNS.map(([name, type]) => `${name} ${type}`).join(', ');

const UNICODE_TEXT = `'emoji 😀👍🏽👨‍👩‍👧 CJK 漢字かなカナ한국어 combining e' || chr(769) || ' RTL שלום zero-width' || chr(8203) || '| quotes '' " \\ tab' || chr(9) || 'nl' || chr(10) || 'cr' || chr(13) || 'end'`;

/** SQL expressions per column; a column not named is NULL. */
const ROWS: readonly Readonly<Record<string, string>>[] = [
  {
    i2: '-32768', i4: '-2147483648', i8: '-9223372036854775808', num: `'NaN'`, nump: `'12345678901234567890.12345678901234567890'`,
    f4: `'-0'`, f8: `0.1::float8 + 0.2::float8`, t: UNICODE_TEXT, vc: `'ünïcødé ✓'`, ch: `'ab'`, ci: `'MiXeD'`, by: `'\\x00ff7f80'::bytea`, b: 'true',
    d: `'4713-01-01 BC'`, ts: `'2024-03-04 05:06:07.123456'`, tstz: `'2024-03-04 05:06:07.123456+05:30'`, tm: `'23:59:59.999999'`, tmtz: `'12:34:56.789+05:45'`,
    iv: `'1 year 2 mons 3 days 04:05:06.789012'`, u: `'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`,
    j: `'{"b": 1,  "a": [1, 2, {"c": "ü"}],   "a": 2}'`, jb: `'{"nested": {"deep": [1, "two", null, true, {"x": "😀"}]}, "num": 1.50, "big": 1e30}'`,
    ai: `'{1,NULL,3}'`, at: `ARRAY['a,b', 'q"x', 'back\\slash', NULL, 'NULL', '', ' spaced ', '{curly}', 'ü']`, a2: `'{{1,2},{3,4}}'`,
    e: `'très "happy", ✓'`, ea: `ARRAY['sad', 'très "happy", ✓', NULL]::mood[]`, dpos: '1', dmail: `'a@b.example'`,
    r4: `'[1,10)'`, rtz: `'["2024-01-01 00:00:00.000001+00",infinity)'`, rn: `'(,5.5]'`, mr: `'{[1,3),[5,7)}'`,
    ip: `'192.168.1.5/24'`, net: `'10.0.0.0/8'`, mac: `'08:00:2b:01:02:03'`, m: `'1234.56'`, p: `'(1.5,-2.25)'`,
    x: `'<a b="1">ü<![CDATA[x<y]]><!-- c --></a>'`, bv: `B'1011'`, bits: `B'1010'`, comp: `ROW(1, 'a "q", b\\')`, tsv: `'a fat cat'`, hs: `'"k"=>"v", "a b"=>NULL, "ü"=>"\\"q\\""'`,
  },
  {
    i2: '32767', i4: '2147483647', i8: '9223372036854775807', num: `'-0.000000000000000000000000000000000000001'`, nump: `'-99999999999999999999.99999999999999999999'`,
    f4: `'Infinity'`, f8: `'-Infinity'`, t: `''`, vc: `''`, ch: `''`, ci: `''`, by: `''::bytea`, b: 'false',
    d: `'infinity'`, ts: `'-infinity'`, tstz: `'infinity'`, tm: `'00:00'`, tmtz: `'00:00:00+00'`, iv: `'-1 days +02:00:00'`, u: `'00000000-0000-0000-0000-000000000000'`,
    j: `'"\\u00e9 escaped \\" quote"'`, jb: `'[]'`, ai: `'{}'`, at: `'{}'`, a2: `'[0:1][1:2]={{1,2},{3,4}}'`, e: `'sad'`, ea: `'{}'`, dpos: '2147483647', dmail: `'@'`,
    r4: `'empty'`, rtz: `'empty'`, rn: `'[1.5,2.5]'`, mr: `'{}'`, ip: `'::1'`, net: `'2001:db8::/32'`, mac: `'ff:ff:ff:ff:ff:ff'`, m: `'-0.01'`, p: `'(0,0)'`,
    x: `'<r/>'`, bv: `B''`, bits: `B'0000'`, comp: `ROW(NULL, NULL)`, tsv: `''`, hs: `''`,
  },
  {
    i2: '0', i4: '0', i8: '0', num: `('1' || repeat('0', 100) || '.' || repeat('9', 60))::numeric`, nump: `'0.00000000000000000001'`,
    f4: `'3.4028235e38'`, f8: `'4.9e-324'`, t: `repeat('long ✓ text with \\ and " and '' ', 300)`, vc: `'x'`, ch: `'abcde'`, ci: `'ÄÖÜ'`, by: `decode(repeat('00ff', 3000), 'hex')`, b: 'true',
    d: `'2024-02-29'`, ts: `'294276-12-31 23:59:59.999999'`, tstz: `'1999-12-31 23:59:59.999999-08'`, tm: `'12:00:00.000001'`, tmtz: `'23:59:59.999999-12'`,
    iv: `'178000000 years'`, u: `'ffffffff-ffff-ffff-ffff-ffffffffffff'`, j: `'null'`, jb: `'{"\\u00fc": "\\ud83d\\ude00", "esc": "tab\\tnl\\n"}'`,
    ai: `ARRAY[2147483647, -2147483648]`, at: `ARRAY[NULL, NULL]::text[]`, a2: `'{{NULL,2},{3,NULL}}'`, e: `'happy'`, ea: `'{ok,ok}'`, dpos: '42', dmail: `'ü@ü'`,
    r4: `'(,)'`, rtz: `'[-infinity,"2000-01-01 00:00:00+00")'`, rn: `'[-1e-20,1e20)'`, mr: `'{[-5,-2)}'`, ip: `'10.1.2.3'`, net: `'192.168.0.0/16'`, mac: `'00:00:00:00:00:00'`, m: `'92233720368547758.07'`,
    p: `'(-1e-300,1e300)'`, x: `'<?xml version="1.0"?><doc>ü &amp; &lt;</doc>'`, bv: `B'1111000011110000'`, bits: `B'1111'`, comp: `ROW(-1, '')`, tsv: `to_tsvector('simple', 'The quick brown fox')`, hs: `'a=>1, b=>2'`,
  },
  {},
  { f4: `'NaN'`, f8: `'NaN'`, num: `'Infinity'`, nump: '0', j: `'[]'`, jb: `'"string"'`, t: `'last'`, iv: `'-00:00:00.000001'`, ts: `'2000-01-01 00:00:00.000001'`, tstz: `'2000-01-01 00:00:00.000001+00'`, p: `'(1e-5,NaN)'` },
];

function insertRows(table: string, firstId: number): string {
  return ROWS.map((row, index) => `INSERT INTO ${table} (id, ${COLUMN_LIST}) VALUES (${firstId + index}, ${COLUMNS.map(([name]) => row[name] ?? 'NULL').join(', ')});`).join('\n');
}

/** Keys of many types: inserted, updated (multi-row, by key), deleted, and one key changed. */
const KEY_TYPES: readonly (readonly [string, readonly string[]])[] = [
  ['text', [`'plain'`, `'ü 😀 漢字'`, `'q"uote '' apos'`, `'back\\slash'`, `'comma, {brace}'`, `''`, `'NULL'`, `' padded '`]],
  ['bytea', [`'\\x00'::bytea`, `'\\xdeadbeef'::bytea`, `''::bytea`, `'\\x5c22'::bytea`]],
  ['numeric', [`'NaN'`, `'1e-30'`, `'123456789012345678901234567890.5'`, `'-1'`, `'Infinity'`]],
  ['float8', [`'Infinity'`, `'-Infinity'`, `'NaN'`, `'0.30000000000000004'`, `'1e-300'`, `'0.1'`]],
  ['float4', [`'1.1'`, `'3.4028235e38'`, `'-1.4e-45'`]],
  ['timestamptz', [`'2024-03-04 05:06:07.123456+05:30'`, `'2024-03-04 05:06:07.123457+05:30'`, `'infinity'`, `'1900-01-01 00:00:00+01:23'`]],
  ['timestamp', [`'2024-03-04 05:06:07.000001'`, `'2024-03-04 05:06:07.000002'`, `'-infinity'`]],
  ['date', [`'2024-02-29'`, `'4713-01-01 BC'`, `'infinity'`, `'0001-01-01'`]],
  ['time', [`'00:00:00.000001'`, `'23:59:59.999999'`]],
  ['interval', [`'1 day'`, `'-1 days +02:00:00'`, `'1 mon 00:00:00.000001'`]],
  ['int[]', [`'{1,2,3}'`, `'{3,2,1}'`, `'{NULL,1}'`, `'{}'`, `'{{1,2},{3,4}}'`]],
  ['text[]', [`ARRAY['a,b', 'c"d', 'e\\f']`, `ARRAY[NULL]::text[]`, `ARRAY['{}']`]],
  ['pair', [`ROW(1, 'a')::pair`, `ROW(NULL, 'x "y", z')::pair`, `ROW(2, NULL)::pair`]],
  ['mood', [`'sad'`, `'très "happy", ✓'`]],
  ['uuid', [`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`, `'00000000-0000-0000-0000-000000000000'`]],
  ['citext', [`'Hello'`, `'wörld'`]],
  ['inet', [`'10.0.0.1'`, `'::1'`, `'10.0.0.1/8'`]],
  ['int8range', [`'[1,5)'`, `'empty'`, `'(,)'`]],
  ['jsonb', [`'{"a": 1}'`, `'[1, "ü"]'`, `'"\\u0041"'`]],
  ['bool', ['true', 'false']],
  ['char(3)', [`'ab'`, `'abc'`]],
  ['money', [`'1.23'`, `'-1000000.00'`]],
  ['bit(3)', [`B'101'`, `B'000'`]],
  ['macaddr', [`'08:00:2b:01:02:03'`]],
];

describe('data types', { timeout: 600_000 }, () => {
  const scope = new TestScope();
  let pair: Pair;
  let engine: RunningEngine;
  const catchUp = () => waitForCatchUp(pair, { engine });

  before(async () => {
    pair = await startPair(scope, { name: 'types' });
    const keyTables = KEY_TYPES.map(([type], i) => `CREATE TABLE key_${i} (k ${type} PRIMARY KEY, v int);`).join('\n');
    await ddlBoth(pair, `${TYPES_DDL}
      CREATE TABLE typed (id int PRIMARY KEY, ${COLUMN_DDL});
      CREATE TABLE typed_full (id int, ${COLUMN_DDL});
      ALTER TABLE typed_full REPLICA IDENTITY FULL;
      ${keyTables}`);
    // Through the initial copy:
    await pair.src.unsafe(insertRows('typed', 1));
    await pair.src.unsafe(insertRows('typed_full', 1));
    engine = await startStreaming(scope, pair);
  });

  after(() => scope.cleanup());

  it('copies every type exactly', async () => {
    await catchUp();
    await assertTablesEqual(pair, 'typed', { orderBy: 't.id' });
    await assertTablesEqual(pair, 'typed_full');
  });

  it('streams inserts of every type exactly', async () => {
    await pair.src.unsafe(insertRows('typed', 11));
    // The FULL table gets every row twice: identical rows for the updates below.
    await pair.src.unsafe(insertRows('typed_full', 11));
    await pair.src.unsafe(insertRows('typed_full', 11));
    await catchUp();
    await assertTablesEqual(pair, 'typed', { orderBy: 't.id' });
    await assertTablesEqual(pair, 'typed_full');
    // Spot checks with exact expectations, not only "same as the source".
    assert.deepEqual(await texts(pair.dst, `SELECT f8::text AS r FROM typed WHERE id = 11`), ['0.30000000000000004']);
    assert.deepEqual(await texts(pair.dst, `SELECT tstz::text AS r FROM typed WHERE id = 11`), ['2024-03-03 23:36:07.123456+00']);
    assert.deepEqual(await texts(pair.dst, `SELECT j::text AS r FROM typed WHERE id = 11`), ['{"b": 1,  "a": [1, 2, {"c": "ü"}],   "a": 2}']);
    assert.deepEqual(await texts(pair.dst, `SELECT a2::text AS r FROM typed WHERE id = 12`), ['[0:1][1:2]={{1,2},{3,4}}']);
    assert.deepEqual(await texts(pair.dst, `SELECT (f4::text = '-0')::text AS r FROM typed WHERE id = 11`), ['true']);
  });

  it('streams updates of every column and of the key, and deletes, by primary key', async () => {
    const s = pair.src;
    // Every column of rows 11..13 takes another row's values (a rotation).
    await s.unsafe(`UPDATE typed t SET (${COLUMN_LIST}) = (SELECT ${COLUMN_LIST} FROM typed o WHERE o.id = CASE t.id WHEN 11 THEN 12 WHEN 12 THEN 13 ELSE 11 END) WHERE t.id IN (11, 12, 13)`);
    await s.unsafe(`UPDATE typed SET (${COLUMN_LIST}) = (SELECT ${COLUMN_LIST} FROM typed o WHERE o.id = 1) WHERE id = 14`);
    await s.unsafe(`UPDATE typed SET (${COLUMN_LIST}) = (SELECT ${COLUMN_LIST} FROM typed o WHERE o.id = 4) WHERE id = 1`);
    await s.unsafe(`UPDATE typed SET id = id + 100 WHERE id IN (2, 12)`);
    await s.unsafe(`DELETE FROM typed WHERE id IN (3, 15)`);
    await catchUp();
    await assertTablesEqual(pair, 'typed', { orderBy: 't.id' });
  });

  it('finds rows by every column under REPLICA IDENTITY FULL (duplicates, NULLs, NaN, json, xml, point)', async () => {
    const s = pair.src;
    for (const id of [11, 12, 13, 14, 15]) {
      await s.unsafe(`UPDATE typed_full SET t = coalesce(t, '') || ' +' WHERE ctid = (SELECT min(ctid) FROM typed_full WHERE id = $1)`, [id]);
    }
    await s.unsafe(`DELETE FROM typed_full WHERE ctid = (SELECT max(ctid) FROM typed_full WHERE id = 13)`);
    await s.unsafe(`DELETE FROM typed_full WHERE ctid = (SELECT max(ctid) FROM typed_full WHERE id = 14)`);
    await s.unsafe(`UPDATE typed_full SET (${COLUMN_LIST}) = (SELECT ${COLUMN_LIST} FROM typed_full o WHERE o.id = 2 LIMIT 1) WHERE ctid = (SELECT max(ctid) FROM typed_full WHERE id = 11)`);
    await s.unsafe(`UPDATE typed_full SET j = '{"changed": true}', x = '<changed/>', p = '(9,9)' WHERE ctid = (SELECT max(ctid) FROM typed_full WHERE id = 15)`);
    await s.unsafe(`DELETE FROM typed_full WHERE id = 5`);
    await catchUp();
    await assertTablesEqual(pair, 'typed_full');
    assert.deepEqual(await texts(pair.dst, `SELECT id || ':' || count(*) AS r FROM typed_full WHERE id > 10 GROUP BY id ORDER BY id`), ['11:2', '12:2', '13:1', '14:1', '15:2']);
  });

  it('updates and deletes by keys of many types', async () => {
    const s = pair.src;
    for (const [i, [, values]] of KEY_TYPES.entries()) {
      await s.unsafe(`INSERT INTO key_${i} (k, v) VALUES ${values.map((v, j) => `(${v}, ${j})`).join(', ')}`);
    }
    await catchUp();
    for (const [i, [, values]] of KEY_TYPES.entries()) {
      await s.unsafe(`UPDATE key_${i} SET v = v + 100`);
      if (values.length >= 2) {
        // Free the last key, then move the first row onto it: a key change by key.
        await s.begin(async (tx) => {
          await tx.unsafe(`DELETE FROM key_${i} WHERE k = ${values[values.length - 1]}`);
          await tx.unsafe(`UPDATE key_${i} SET k = ${values[values.length - 1]}, v = -1 WHERE k = ${values[0]}`);
        });
      }
    }
    await catchUp();
    for (const [i, [type]] of KEY_TYPES.entries()) {
      await assertTablesEqual(pair, `key_${i}`, { orderBy: 't.v' }).catch((e: Error) => { throw new Error(`key type ${type}: ${e.message}`); });
    }
  });

  /** One replication in its own database: a failure there cannot stall the main one. */
  async function isolated(database: string, ddl: string, body: (p: Pair, e: RunningEngine) => Promise<void>): Promise<void> {
    const p = await databasePair(scope, pair, database);
    await ddlBoth(p, ddl);
    const e = await startStreaming(scope, p, { name: database });
    try {
      await body(p, e);
    } finally {
      await e.stop().catch(() => {});
    }
  }

  const fullIdentityCase = (database: string, ddl: string, values: readonly string[]) => isolated(database, `${ddl}; ALTER TABLE tricky REPLICA IDENTITY FULL;`, async (p, e) => {
    for (const value of values) await p.src.unsafe(`INSERT INTO tricky VALUES (1, ${value}), (1, ${value}), (2, ${value})`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    await p.src.unsafe(`UPDATE tricky SET id = 10 WHERE ctid = (SELECT min(ctid) FROM tricky WHERE id = 1)`);
    await p.src.unsafe(`DELETE FROM tricky WHERE ctid = (SELECT min(ctid) FROM tricky WHERE id = 2)`);
    await waitForCatchUp(p, { engine: e, timeoutMs: 20_000 });
    await assertTablesEqual(p, 'tricky');
  });

  it('finds rows under REPLICA IDENTITY FULL with point[] and json[] columns', () =>
    fullIdentityCase('noeq_arrays', `CREATE TABLE tricky (id int, pts point[], js json[])`, [`ARRAY['(1,2)'::point, NULL], ARRAY['{"a": 1}'::json]`, `NULL, NULL`]));

  it('finds rows under REPLICA IDENTITY FULL with a domain over json', () =>
    fullIdentityCase('noeq_domain', `CREATE DOMAIN jdom AS json; CREATE TABLE tricky (id int, jd jdom)`, [`'{"a":  1}'`, `NULL`]));

  it('finds rows under REPLICA IDENTITY FULL with a composite type holding a point', () =>
    fullIdentityCase('noeq_composite', `CREATE TYPE geo AS (label text, at point); CREATE TABLE tricky (id int, g geo)`, [`ROW('here', '(1,2)')`, `NULL`]));

  /**
   * The walsender writes values with its session's settings, which come from the
   * source database's (or role's) defaults unless the replication connection pins
   * them; the apply session reads them with the target's. PostgreSQL's own
   * subscriber pins datestyle, intervalstyle and extra_float_digits on its
   * replication connection for this reason.
   */
  const styledCase = (database: string, sourceDefaults: string, targetDefaults: string) => isolated(database,
    `CREATE TABLE styled (id int PRIMARY KEY, d date, ts timestamp, tstz timestamptz, iv interval, f8 float8, f4 float4, by bytea, iva interval[])`, async (p, e) => {
      const row = (id: number) => `(${id}, '2024-03-04', '2024-03-04 05:06:07.123456', '2024-03-04 05:06:07.123456+05:30', '-1 days +02:00:00.5', 0.1::float8 + 0.2::float8, '1.1'::float4 / 3, '\\x5c00ff'::bytea, ARRAY['1 year -2 mons'::interval])`;
      // Sessions opened from now on get these defaults: restart the engine so that its sessions do.
      await p.src.unsafe(sourceDefaults.replace(/DB/g, database));
      if (targetDefaults) await p.dst.unsafe(targetDefaults.replace(/DB/g, database));
      await e.stop();
      const e2 = await startStreaming(scope, p, { name: database });
      try {
        await p.src.unsafe(`INSERT INTO styled VALUES ${row(1)}, ${row(2)}`);
        await p.src.unsafe(`UPDATE styled SET f8 = f8 * 3, d = d + 1 WHERE id = 2`);
        await waitForCatchUp(p, { engine: e2, timeoutMs: 20_000 });
        await assertTablesEqual(p, 'styled', { orderBy: 't.id' });
      } finally {
        await e2.stop().catch(() => {});
      }
    });

  it('streams floats exactly when the source database defaults to extra_float_digits = 0', () =>
    styledCase('styles_float', `ALTER DATABASE DB SET extra_float_digits = 0`, ''));

  it('streams dates, times and intervals exactly whatever DateStyle, IntervalStyle and TimeZone each side defaults to', () =>
    styledCase('styles_date',
      `ALTER DATABASE DB SET datestyle = 'SQL, DMY'; ALTER DATABASE DB SET intervalstyle = 'sql_standard';
       ALTER DATABASE DB SET timezone = 'Asia/Tokyo'; ALTER DATABASE DB SET bytea_output = 'escape'`,
      `ALTER DATABASE DB SET datestyle = 'ISO, MDY'; ALTER DATABASE DB SET intervalstyle = 'iso_8601';
       ALTER DATABASE DB SET timezone = 'America/New_York'`));
});
