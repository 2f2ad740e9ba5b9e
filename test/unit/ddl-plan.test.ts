import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planAlter, planEnum, isWidening } from '../../src/sinks/postgres/ddl-plan.js';
import type { ColumnSnapshot, TableSnapshot } from '../../src/apply/ddl-event.js';

const col = (attnum: number, name: string, type = 'integer', extra: Partial<ColumnSnapshot> = {}): ColumnSnapshot =>
  ({ attnum, name, type, typmod: -1, notnull: false, default: null, identity: '', generated: null, ...extra });
const snap = (columns: ColumnSnapshot[], extra: Partial<TableSnapshot> = {}): TableSnapshot =>
  ({ oid: 1, schema: 'public', name: 't', relkind: 'r', replident: 'd', columns, indexes: [], constraints: [], ...extra });

test('columns are matched by attnum: a rename is a rename, a swap goes through temporary names', () => {
  const before = snap([col(1, 'a'), col(2, 'b')]);
  assert.deepEqual(planAlter(before, snap([col(1, 'x'), col(2, 'b')])).map((s) => s.sql), ['ALTER TABLE "public"."t" RENAME COLUMN "a" TO "x"']);
  const swapped = planAlter(before, snap([col(1, 'b'), col(2, 'a')])).map((s) => s.sql);
  assert.deepEqual(swapped, [
    'ALTER TABLE "public"."t" RENAME COLUMN "a" TO "pgtide_rename_1"',
    'ALTER TABLE "public"."t" RENAME COLUMN "b" TO "pgtide_rename_2"',
    'ALTER TABLE "public"."t" RENAME COLUMN "pgtide_rename_1" TO "b"',
    'ALTER TABLE "public"."t" RENAME COLUMN "pgtide_rename_2" TO "a"',
  ]);
});

test('drop plus add of a same-named column (new attnum) is a drop and an add; drops are destructive', () => {
  const steps = planAlter(snap([col(1, 'id'), col(2, 'v')]), snap([col(1, 'id'), col(3, 'v', 'text', { default: "'x'::text", notnull: true })]));
  assert.deepEqual(steps.map((s) => [s.sql, s.destructive]), [
    ['ALTER TABLE "public"."t" DROP COLUMN IF EXISTS "v"', true],
    ['ALTER TABLE "public"."t" ADD COLUMN IF NOT EXISTS "v" text DEFAULT \'x\'::text NOT NULL', false],
  ]);
});

test('type changes cast with USING and are destructive unless widening; defaults survive them', () => {
  const steps = planAlter(snap([col(1, 'n', 'integer', { default: '0' })]), snap([col(1, 'n', 'smallint', { default: '0' })]));
  assert.deepEqual(steps.map((s) => [s.sql, s.destructive]), [
    ['ALTER TABLE "public"."t" ALTER COLUMN "n" DROP DEFAULT', false],
    ['ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE smallint USING "n"::smallint', true],
    ['ALTER TABLE "public"."t" ALTER COLUMN "n" SET DEFAULT 0', false],
  ]);
  assert.equal(isWidening('integer', 'bigint'), true);
  assert.equal(isWidening('character varying(10)', 'character varying(20)'), true);
  assert.equal(isWidening('character varying(20)', 'character varying(10)'), false);
  assert.equal(isWidening('character varying(10)', 'text'), true);
  assert.equal(isWidening('numeric(10,2)', 'numeric(12,2)'), true);
  assert.equal(isWidening('numeric(10,2)', 'numeric(12,3)'), false);
  assert.equal(isWidening('text', 'integer'), false);
});

test('a renamed table is renamed first, and later steps use the new name', () => {
  const steps = planAlter(snap([col(1, 'a')]), snap([col(1, 'a', 'integer', { notnull: true })], { name: 'u' })).map((s) => s.sql);
  assert.deepEqual(steps, ['ALTER TABLE "public"."t" RENAME TO "u"', 'ALTER TABLE "public"."u" ALTER COLUMN "a" SET NOT NULL']);
});

test('an index renamed keeps its OID: renamed, not rebuilt; one rebuilt by a type change under a new OID is left alone', () => {
  const index = { oid: 10, name: 'i1', def: 'CREATE INDEX i1 ON public.t USING btree (a)', primary: false, replident: false, constraint: null };
  const renamed = planAlter(snap([col(1, 'a')], { indexes: [index] }), snap([col(1, 'a')], { indexes: [{ ...index, name: 'i2', def: 'CREATE INDEX i2 ON public.t USING btree (a)' }] }));
  assert.deepEqual(renamed.map((s) => s.sql), ['ALTER INDEX "public"."i1" RENAME TO "i2"']);
  const rebuilt = planAlter(snap([col(1, 'a')], { indexes: [index] }), snap([col(1, 'a', 'bigint')], { indexes: [{ ...index, oid: 11 }] }));
  assert.deepEqual(rebuilt.map((s) => s.sql), ['ALTER TABLE "public"."t" ALTER COLUMN "a" TYPE bigint USING "a"::bigint']);
});

test('enum values missing on the target are added in the source order, each placed by a neighbour the target has', () => {
  const steps = planEnum({ schema: 'public', name: 'mood', labels: ['ok', 'wry', 'meh', 'sad', "o'k"] }, ['ok', 'sad']).map((s) => s.sql);
  assert.deepEqual(steps, [
    `ALTER TYPE "public"."mood" ADD VALUE IF NOT EXISTS 'wry' BEFORE 'sad'`,
    `ALTER TYPE "public"."mood" ADD VALUE IF NOT EXISTS 'meh' BEFORE 'sad'`,
    `ALTER TYPE "public"."mood" ADD VALUE IF NOT EXISTS 'o''k' AFTER 'sad'`,
  ]);
});

test('CREATE INDEX CONCURRENTLY: the new index is marked for the side connection, built CONCURRENTLY IF NOT EXISTS', () => {
  const index = { oid: 10, name: 'i1', def: 'CREATE UNIQUE INDEX i1 ON public.t USING btree (a)', primary: false, replident: false, constraint: null };
  const [step] = planAlter(snap([col(1, 'a')]), snap([col(1, 'a')], { indexes: [index] }), { concurrently: true });
  assert.equal(step!.sql, 'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i1 ON public.t USING btree (a)');
  assert.deepEqual(step!.concurrentIndex, { name: 'i1', qualifiedName: '"public"."i1"' });
});
