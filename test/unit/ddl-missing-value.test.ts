import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planAlter } from '../../src/sinks/postgres/ddl-plan.js';
import type { ColumnSnapshot, TableSnapshot } from '../../src/apply/ddl-event.js';

const col = (attnum: number, name: string, type = 'integer', extra: Partial<ColumnSnapshot> = {}): ColumnSnapshot =>
  ({ attnum, name, type, typmod: -1, notnull: false, default: null, identity: '', generated: null, ...extra });
const snap = (columns: ColumnSnapshot[]): TableSnapshot =>
  ({ oid: 1, schema: 'public', name: 't', relkind: 'r', replident: 'd', columns, indexes: [], constraints: [] });

test('a column added with now(): the source\'s stored value as the default first, then the expression', () => {
  const added = col(2, 'at', 'timestamp with time zone', { default: 'now()', notnull: true, missing: "2026-12-06 20:21:00.823896+00" });
  assert.deepEqual(planAlter(snap([col(1, 'id')]), snap([col(1, 'id'), added])).map((s) => s.sql), [
    `ALTER TABLE "public"."t" ADD COLUMN IF NOT EXISTS "at" timestamp with time zone DEFAULT '2026-12-06 20:21:00.823896+00'::timestamp with time zone NOT NULL`,
    'ALTER TABLE "public"."t" ALTER COLUMN "at" SET DEFAULT now()',
  ]);
  // A quote in the value (current_setting, current_user) stays a literal.
  const named = col(2, 'who', 'name', { default: 'CURRENT_USER', missing: "o'brien" });
  assert.equal(planAlter(snap([col(1, 'id')]), snap([col(1, 'id'), named]))[0]!.sql, `ALTER TABLE "public"."t" ADD COLUMN IF NOT EXISTS "who" name DEFAULT 'o''brien'::name`);
});

test('a constant default, no stored value, identity or an existing column: replayed as before', () => {
  const plain = (c: ColumnSnapshot): string[] => planAlter(snap([col(1, 'id')]), snap([col(1, 'id'), c])).map((s) => s.sql);
  assert.deepEqual(plain(col(2, 'k', 'integer', { default: '7', missing: '7' })), ['ALTER TABLE "public"."t" ADD COLUMN IF NOT EXISTS "k" integer DEFAULT 7']);
  assert.deepEqual(plain(col(2, 'k', 'text', { default: "'x'::text", missing: 'x' })), [`ALTER TABLE "public"."t" ADD COLUMN IF NOT EXISTS "k" text DEFAULT 'x'::text`]);
  assert.deepEqual(plain(col(2, 'at', 'timestamp with time zone', { default: 'clock_timestamp()' })), ['ALTER TABLE "public"."t" ADD COLUMN IF NOT EXISTS "at" timestamp with time zone DEFAULT clock_timestamp()']);
  // The stored value of a column that already existed changes nothing.
  assert.deepEqual(planAlter(snap([col(1, 'id'), col(2, 'at', 'timestamp with time zone', { default: 'now()' })]),
    snap([col(1, 'id'), col(2, 'at', 'timestamp with time zone', { default: 'now()', missing: '2026-12-06 20:21:00+00' })])), []);
});
