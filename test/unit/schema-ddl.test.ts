/**
 * The schema DDL generator and planner without a server: quoting of odd
 * identifiers, the order of statements (types before tables, each type after
 * what it is built from, a parent before its partitions, foreign keys after
 * every table), and what the diff applies or refuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSchema, columnDefinition, createIndex, literal, type Statement } from '../../src/schema/ddl.js';
import { planSchema } from '../../src/schema/diff.js';
import type { Column, SchemaModel, Table, UserType } from '../../src/schema/model.js';

const ODD_SCHEMA = 'Ünïcødé "Schema"';

function column(name: string, extra: Partial<Column> = {}): Column {
  return { name, type: 'integer', notNull: false, notNullConstraint: null, default: null, identity: null, identitySequence: null, generated: null, collation: null, comment: null, ...extra };
}

function table(schema: string, name: string, extra: Partial<Table> = {}): Table {
  return {
    schema, name, partitioned: false, partitionKey: null, partitionOf: null, columns: [column('id', { notNull: true })],
    constraints: [], indexes: [], replicaIdentity: 'default', comment: null, ...extra,
  };
}

const mood: UserType = { schema: ODD_SCHEMA, name: 'Mood', kind: 'enum', labels: ['sad', "it's ok"], comment: null, dependsOn: [] };
const happyMood: UserType = {
  schema: 'public', name: 'happy mood', kind: 'domain', baseType: `"${ODD_SCHEMA.replace(/"/g, '""')}"."Mood"`, notNull: true, default: null, collation: null,
  checks: [{ name: 'not "sad"', definition: `CHECK ((VALUE <> 'sad'::"Ünïcødé ""Schema"""."Mood"))` }], comment: 'a domain', dependsOn: [`"${ODD_SCHEMA.replace(/"/g, '""')}"."Mood"`],
};

/** A model whose lists are in the worst order: partitions before parents, the domain before its enum, the referencing table first. */
function model(): SchemaModel {
  const parent = table('public', 'Events', {
    partitioned: true, partitionKey: 'RANGE ("At")',
    columns: [column('id', { notNull: true }), column('At', { type: 'timestamp with time zone', notNull: true })],
    constraints: [{ name: 'Events_pkey', kind: 'primary key', definition: 'PRIMARY KEY (id, "At")', references: null, comment: null }],
    indexes: [{ name: 'Events at', definition: 'CREATE INDEX "Events at" ON ONLY public."Events" USING btree ("At")', comment: null }],
  });
  const partition = table('public', 'Events 2024', {
    partitionOf: { parent: { schema: 'public', name: 'Events' }, bound: "FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2025-01-01 00:00:00+00')" },
    columns: parent.columns,
  });
  const child = table(ODD_SCHEMA, 'Order "Items"', {
    columns: [column('id', { notNull: true }), column('Parent Id'), column('feeling', { type: 'public."happy mood"' })],
    constraints: [
      { name: 'fk to "parent"', kind: 'foreign key', definition: `FOREIGN KEY ("Parent Id") REFERENCES "${ODD_SCHEMA.replace(/"/g, '""')}"."Parent"(id)`, references: { schema: ODD_SCHEMA, name: 'Parent' }, comment: null },
      { name: 'fk outside', kind: 'foreign key', definition: 'FOREIGN KEY (id) REFERENCES public.elsewhere(id)', references: { schema: 'public', name: 'elsewhere' }, comment: 'gone' },
    ],
  });
  const referenced = table(ODD_SCHEMA, 'Parent', {
    constraints: [{ name: 'Parent_pkey', kind: 'primary key', definition: 'PRIMARY KEY (id)', references: null, comment: null }],
    comment: "the parent's table",
  });
  return { schemas: ['public', ODD_SCHEMA], collations: [], types: [happyMood, mood], sequences: [], tables: [partition, child, parent, referenced], skipped: [] };
}

const index = (statements: readonly Statement[], pattern: RegExp): number => {
  const at = statements.findIndex((s) => pattern.test(s.sql));
  assert.ok(at >= 0, `no statement matches ${pattern}:\n${statements.map((s) => s.sql).join('\n')}`);
  return at;
};

test('every identifier pgtide writes is quoted, quotes doubled, unicode and spaces kept', () => {
  const { statements } = generateSchema(model());
  const sql = statements.map((s) => s.sql);
  assert.ok(sql.includes('CREATE SCHEMA "Ünïcødé ""Schema"""'), sql.join('\n'));
  assert.ok(sql.includes(`CREATE TYPE "Ünïcødé ""Schema"""."Mood" AS ENUM ('sad', 'it''s ok')`), sql.join('\n'));
  assert.ok(sql.includes(`CREATE DOMAIN "public"."happy mood" AS "Ünïcødé ""Schema"""."Mood" NOT NULL CONSTRAINT "not ""sad""" CHECK ((VALUE <> 'sad'::"Ünïcødé ""Schema"""."Mood"))`), sql.join('\n'));
  assert.ok(sql.includes(`CREATE TABLE "Ünïcødé ""Schema"""."Order ""Items""" ("id" integer NOT NULL, "Parent Id" integer, "feeling" public."happy mood")`), sql.join('\n'));
  assert.ok(sql.includes(`ALTER TABLE "Ünïcødé ""Schema"""."Order ""Items""" ADD CONSTRAINT "fk to ""parent""" FOREIGN KEY ("Parent Id") REFERENCES "Ünïcødé ""Schema"""."Parent"(id)`), sql.join('\n'));
  assert.ok(sql.includes(`COMMENT ON TABLE "Ünïcødé ""Schema"""."Parent" IS 'the parent''s table'`), sql.join('\n'));
  assert.equal(literal("a'b''c"), "'a''b''''c'");
});

test('order: schemas, then each type after its dependency, tables with parents before partitions, foreign keys after every table', () => {
  const { statements, skipped } = generateSchema(model());
  const schema = index(statements, /^CREATE SCHEMA "Ünïcødé/);
  const enumType = index(statements, /^CREATE TYPE .*"Mood" AS ENUM/);
  const domain = index(statements, /^CREATE DOMAIN "public"."happy mood"/);
  const parent = index(statements, /^CREATE TABLE "public"."Events" \(/);
  const partition = index(statements, /^CREATE TABLE "public"."Events 2024" PARTITION OF "public"."Events" FOR VALUES/);
  const child = index(statements, /^CREATE TABLE .*"Order ""Items"""/);
  const referenced = index(statements, /^CREATE TABLE .*"Parent" \(/);
  const pk = index(statements, /ADD CONSTRAINT "Parent_pkey" PRIMARY KEY/);
  const fk = index(statements, /ADD CONSTRAINT "fk to ""parent"""/);
  assert.ok(schema < enumType && enumType < domain, 'schema, enum, then the domain over it');
  assert.ok(domain < child && domain < parent, 'types before tables');
  assert.ok(parent < partition, 'partitioned parent before its partition');
  assert.ok(child < referenced && referenced < pk && pk < fk, 'the foreign key after every table and the key it references');
  assert.ok(statements.slice(fk + 1).every((s) => s.phase === 'foreign key' || s.phase === 'comment'), 'only foreign keys and comments after the first foreign key');
  // A foreign key to a table that is not replicated is left out, with its comment, and said so.
  assert.ok(!statements.some((s) => /fk outside/.test(s.sql)), 'the dangling foreign key is not created');
  assert.deepEqual(skipped, ['foreign key "fk outside" on "Ünïcødé ""Schema"""."Order ""Items""" (references "public"."elsewhere", which is not replicated)']);
  // The parent's index is created on the whole tree, not ON ONLY (which would leave it invalid).
  assert.equal(statements[index(statements, /"Events at"/)]!.sql, 'CREATE INDEX "Events at" ON public."Events" USING btree ("At")');
});

test('columns: identity with its sequence, generated, collation, default, NOT NULL', () => {
  assert.equal(columnDefinition(column('Id', {
    type: 'bigint', notNull: true, identity: 'always',
    identitySequence: { schema: 's', name: 'T_Id_seq', options: { dataType: 'bigint', start: '10', increment: '5', min: '1', max: '9223372036854775807', cache: '1', cycle: false } },
  })), '"Id" bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME "s"."T_Id_seq" START WITH 10 INCREMENT BY 5 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1 NO CYCLE) NOT NULL');
  assert.equal(columnDefinition(column('total', { type: 'numeric', generated: 'stored', default: '(price * (qty)::numeric)' })), '"total" numeric GENERATED ALWAYS AS ((price * (qty)::numeric)) STORED');
  assert.equal(columnDefinition(column('name', { type: 'text', collation: { schema: 'public', name: 'My "C"' }, default: "'x'::text", notNull: true })), `"name" text COLLATE "public"."My ""C""" DEFAULT 'x'::text NOT NULL`);
  // PostgreSQL 18's named NOT NULL constraint keeps its name.
  assert.equal(columnDefinition(column('note', { type: 'text', notNull: true, notNullConstraint: 'note "given"' })), '"note" text CONSTRAINT "note ""given""" NOT NULL');
  // A name containing ON ONLY is not mistaken for the clause.
  assert.equal(createIndex({ schema: 'public', name: 't' }, { name: 'x ON ONLY y', definition: 'CREATE UNIQUE INDEX "x ON ONLY y" ON ONLY public.t USING btree (a)', comment: null }).sql, 'CREATE UNIQUE INDEX "x ON ONLY y" ON public.t USING btree (a)');
});

test('plan: identical objects are left alone; missing ones are created; differences are named, safe ones fixed, others refused', () => {
  const source = model();
  assert.deepEqual(planSchema(source, source), { missing: [], create: [], differences: [], skipped: source.skipped.concat(['foreign key "fk outside" on "Ünïcødé ""Schema"""."Order ""Items""" (references "public"."elsewhere", which is not replicated)']) });

  const child = source.tables[1]!;
  const changedChild: Table = {
    ...child,
    columns: [column('id', { type: 'bigint' }), column('extra')],
    constraints: [],
  };
  const target: SchemaModel = {
    ...source,
    schemas: ['public', ODD_SCHEMA],
    types: [{ ...mood, labels: ['sad'] }, happyMood],
    tables: [changedChild, source.tables[3]!],
  };
  const plan = planSchema(source, target);
  assert.deepEqual(plan.missing, ['table "public"."Events"', 'table "public"."Events 2024"']);
  const about = (object: string) => plan.differences.filter((d) => d.object === object);
  const [idType, idNull, ...more] = about('column "id" of "Ünïcødé ""Schema"""."Order ""Items"""');
  assert.match(idType!.message, /integer on the source, bigint on the target/);
  assert.ok(idType!.refused !== null && idType!.fix.length === 0, 'a type change is refused');
  // Every difference of the column is named, not only the first.
  assert.equal(idNull?.message, 'NOT NULL on the source, nullable on the target');
  assert.match(idNull?.refused ?? '', /SET NOT NULL scans the table/);
  assert.deepEqual(more, []);
  const [added] = about('column "Parent Id" of "Ünïcødé ""Schema"""."Order ""Items"""');
  assert.equal(added!.refused, null);
  assert.equal(added!.fix[0]!.sql, 'ALTER TABLE "Ünïcødé ""Schema"""."Order ""Items""" ADD COLUMN "Parent Id" integer');
  const [extra] = about('column "extra" of "Ünïcødé ""Schema"""."Order ""Items"""');
  assert.match(extra!.message, /exists only on the target/);
  assert.ok(extra!.refused !== null);
  const [fk] = about('constraint "fk to ""parent""" on "Ünïcødé ""Schema"""."Order ""Items"""');
  assert.match(fk!.fix[0]!.sql, /ADD CONSTRAINT "fk to ""parent""" FOREIGN KEY/);
  assert.equal(about('constraint "fk outside" on "Ünïcødé ""Schema"""."Order ""Items"""').length, 0, 'a dangling foreign key is no difference');
  const targetOnly = planSchema(source, { ...source, tables: [...source.tables, { ...source.tables[0]!, name: 'Events 2099', partitionOf: { parent: { schema: 'public', name: 'Events' }, bound: 'DEFAULT' } }] });
  assert.deepEqual(targetOnly.differences.map((d) => `${d.object}: ${d.message}`), ['table "public"."Events 2099": exists only on the target (a partition of "public"."Events" DEFAULT)']);
  const [label] = about('type "Ünïcødé ""Schema"""."Mood"');
  assert.equal(label!.fix[0]!.sql, `ALTER TYPE "Ünïcødé ""Schema"""."Mood" ADD VALUE 'it''s ok' AFTER 'sad'`);
});
