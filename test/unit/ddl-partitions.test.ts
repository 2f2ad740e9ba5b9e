import { test } from 'node:test';
import assert from 'node:assert/strict';
import { partitionChange, withoutOnly } from '../../src/sinks/postgres/ddl-partitions.js';
import { planComments } from '../../src/sinks/postgres/ddl-comments.js';
import { planCreate } from '../../src/sinks/postgres/ddl-plan.js';
import type { ColumnSnapshot, DdlEvent, TableSnapshot } from '../../src/apply/ddl-event.js';

const col = (attnum: number, name: string): ColumnSnapshot => ({ attnum, name, type: 'integer', typmod: -1, notnull: false, default: null, identity: '', generated: null });
const snap = (oid: number, name: string, extra: Partial<TableSnapshot> = {}): TableSnapshot =>
  ({ oid, schema: 'public', name, relkind: 'r', replident: 'd', columns: [col(1, 'id'), col(2, 'v')], indexes: [], constraints: [], ...extra });
const of = (parentOid: number, parent: string, bound: string): TableSnapshot['partition'] => ({ parent_oid: parentOid, parent_schema: 'public', parent, bound });
const message = (tables: { before: TableSnapshot | null; after: TableSnapshot }[]): DdlEvent =>
  ({ v: 1, event: 'ddl_command_end', tag: 'ALTER TABLE', statement: null, search_path: null, objects: [], tables: tables.map((t) => ({ oid: t.after.oid, created: false, ...t })) });

test('a table that becomes a partition joins; one that stops being one is detached; a partition changed with its root is left to the root', () => {
  const root = snap(10, 'root', { relkind: 'p', partkey: 'RANGE (id)' });
  const p = snap(11, 'p', { partition: of(10, 'root', 'FOR VALUES FROM (0) TO (10)') });
  const plain = snap(11, 'p');
  assert.equal(partitionChange(message([{ before: null, after: p }]), { before: null, after: p, filled: true })?.kind, 'joined');
  assert.equal(partitionChange(message([{ before: plain, after: p }]), { before: plain, after: p })?.kind, 'joined');
  assert.equal(partitionChange(message([{ before: p, after: plain }]), { before: p, after: plain })?.kind, 'detached');
  // A column added on the root arrives for the partition too, in the same message.
  const rootAfter = { ...root, columns: [...root.columns, col(3, 'w')] };
  const pAfter = { ...p, columns: [...p.columns, col(3, 'w')] };
  assert.equal(partitionChange(message([{ before: root, after: rootAfter }, { before: p, after: pAfter }]), { before: p, after: pAfter })?.kind, 'inherited');
  // The partition's own change (its root not in the message) is planned as any table's.
  assert.equal(partitionChange(message([{ before: p, after: pAfter }]), { before: p, after: pAfter }), undefined);
});

test('indexes of a partitioned table are made on its partitions too; a new partitioned table keeps its key; comments follow attnums', () => {
  assert.equal(withoutOnly('CREATE INDEX m_v_idx ON ONLY public.m USING btree (v)'), 'CREATE INDEX m_v_idx ON public.m USING btree (v)');
  assert.equal(withoutOnly('CREATE UNIQUE INDEX IF NOT EXISTS m_v_idx ON ONLY public.m USING btree (v)'), 'CREATE UNIQUE INDEX IF NOT EXISTS m_v_idx ON public.m USING btree (v)');
  assert.equal(withoutOnly('ALTER TABLE ONLY x'), 'ALTER TABLE ONLY x');
  const root = snap(10, 'root', { relkind: 'p', partkey: 'LIST (id)', comments: { 0: 'the root' } });
  assert.deepEqual(planCreate(root).map((s) => s.sql), [
    // The schema first, when the target lacks it (ddl-schemas.ts).
    `DO $pgtide$ BEGIN IF pg_catalog.to_regnamespace('"public"') IS NULL THEN CREATE SCHEMA "public"; END IF; END $pgtide$`,
    'CREATE TABLE IF NOT EXISTS "public"."root" ("id" integer, "v" integer) PARTITION BY LIST (id)',
    'ALTER TABLE "public"."root" REPLICA IDENTITY DEFAULT',
    `COMMENT ON TABLE "public"."root" IS 'the root'`,
  ]);
  const before = snap(1, 't', { comments: { 0: 'old', 2: 'v col' } });
  const after = snap(1, 't', { columns: [col(1, 'id'), col(2, 'renamed')], comments: { 2: "it's v" } });
  assert.deepEqual(planComments(before, after).map((s) => s.sql), [
    'COMMENT ON TABLE "public"."t" IS NULL',
    `COMMENT ON COLUMN "public"."t"."renamed" IS 'it''s v'`,
  ]);
});
