/**
 * A `pgtide.ddl` logical message, as the source's event triggers write it
 * (src/source/ddl-capture.ts): 64 hex digits of HMAC-SHA256 over the body, a
 * space, and the body, UTF-8 JSON. The body is parsed only after the
 * signature matched, so a forged message is never interpreted.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

const column = z.object({
  attnum: z.number().int(),
  name: z.string(),
  type: z.string(),
  typmod: z.number().int(),
  notnull: z.boolean(),
  default: z.string().nullable(),
  identity: z.string(),
  generated: z.string().nullable(),
  // The value rows that existed at ADD COLUMN read (pg_attribute.attmissingval), as text; absent without one.
  missing: z.string().optional(),
});

const index = z.object({
  oid: z.number().int(),
  name: z.string(),
  def: z.string(),
  primary: z.boolean(),
  replident: z.boolean(),
  constraint: z.string().nullable(),
});

const constraint = z.object({ name: z.string(), type: z.string(), def: z.string() });

/** A sequence a column default uses (numbers as text: bigint range). */
const sequence = z.object({
  schema: z.string(),
  name: z.string(),
  type: z.string(),
  start: z.string(),
  increment: z.string(),
  min: z.string(),
  max: z.string(),
  cache: z.string(),
  cycle: z.boolean(),
  owned_by: z.string().nullable(),
});

const tableSnapshot = z.object({
  oid: z.number().int(),
  schema: z.string(),
  name: z.string(),
  relkind: z.string(),
  replident: z.string(),
  columns: z.array(column),
  indexes: z.array(index),
  constraints: z.array(constraint),
  // Absent in snapshots taken before sequences were captured.
  sequences: z.array(sequence).optional(),
  // A partition's parent and bound; a partitioned table's key (absent otherwise).
  partition: z.object({ parent_oid: z.number().int(), parent_schema: z.string(), parent: z.string(), bound: z.string() }).optional(),
  partkey: z.string().optional(),
  // Comments: "0" the table's, else by column attnum (absent when there are none).
  comments: z.record(z.string(), z.string()).optional(),
});

const common = { v: z.literal(1), tag: z.string(), statement: z.string().nullable(), search_path: z.string().nullable() };

const body = z.discriminatedUnion('event', [
  z.object({
    ...common,
    event: z.literal('ddl_command_end'),
    objects: z.array(z.object({ tag: z.string(), type: z.string(), identity: z.string().nullable() })),
    // recopy: rewritten with rows for a default the target cannot reproduce (absent before the table_rewrite trigger).
    tables: z.array(z.object({
      oid: z.number().int(), created: z.boolean(), before: tableSnapshot.nullable(), after: tableSnapshot, recopy: z.boolean().optional(),
      // Where the table's rows are published (itself, or an ancestor via publish_via_partition_root; null: not
      // published), and whether a table that just became a partition holds rows (absent before partitions were captured).
      published_as: z.object({ schema: z.string(), name: z.string() }).nullable().optional(),
      filled: z.boolean().optional(),
    })),
  }),
  z.object({
    ...common,
    event: z.literal('enum'),
    type: z.object({ schema: z.string(), name: z.string(), labels: z.array(z.string()) }),
  }),
  z.object({
    ...common,
    // A view, function, procedure or trigger: replayed as statement text (sinks/postgres/ddl-objects.ts).
    event: z.literal('object'),
    objects: z.array(z.object({ tag: z.string(), type: z.string(), identity: z.string().nullable() })),
  }),
  z.object({
    ...common,
    event: z.literal('sql_drop'),
    dropped: z.array(z.object({ oid: z.number().int(), schema: z.string(), name: z.string(), before: tableSnapshot.nullable() })),
    // DROP SCHEMA: the schemas in scope it removed, dropped on the target once empty (absent otherwise).
    schemas: z.array(z.object({ oid: z.number().int(), name: z.string() })).optional(),
  }),
  z.object({
    ...common,
    // ALTER SCHEMA … RENAME TO of a schema in scope (src/source/ddl-capture-schemas.ts), by the schema's OID;
    // tables: the new snapshots of the tables in scope whose snapshot the rename changed.
    event: z.literal('schema'),
    action: z.literal('rename'),
    oid: z.number().int(),
    old: z.string(),
    name: z.string(),
    tables: z.array(z.object({ oid: z.number().int(), after: tableSnapshot })),
  }),
]);

export type ColumnSnapshot = z.infer<typeof column>;
export type IndexSnapshot = z.infer<typeof index>;
export type ConstraintSnapshot = z.infer<typeof constraint>;
export type SequenceSnapshot = z.infer<typeof sequence>;
export type TableSnapshot = z.infer<typeof tableSnapshot>;
export type DdlEvent = z.infer<typeof body>;

export const parseTableSnapshot = (value: unknown): TableSnapshot => tableSnapshot.parse(value);

export type VerifiedDdl =
  | { readonly ok: true; readonly event: DdlEvent }
  | { readonly ok: false; readonly reason: 'unsigned' | 'bad signature' | 'no key' | 'malformed' };

const SIGNATURE_HEX = 64;

/** Checks the signature with `key`, then parses the body. */
export function verifyDdlMessage(content: Uint8Array, key: Uint8Array | undefined): VerifiedDdl {
  const bytes = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  if (bytes.length <= SIGNATURE_HEX || bytes[SIGNATURE_HEX] !== 0x20) return { ok: false, reason: 'unsigned' };
  const signature = bytes.subarray(0, SIGNATURE_HEX).toString('latin1');
  if (!/^[0-9a-f]{64}$/.test(signature)) return { ok: false, reason: 'unsigned' };
  if (!key) return { ok: false, reason: 'no key' };
  const payload = bytes.subarray(SIGNATURE_HEX + 1);
  const expected = createHmac('sha256', key).update(payload).digest();
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) return { ok: false, reason: 'bad signature' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  const result = body.safeParse(parsed);
  return result.success ? { ok: true, event: result.data } : { ok: false, reason: 'malformed' };
}

/** The message as text, for the record of a refused one (never interpreted). */
export function messageText(content: Uint8Array): string {
  return Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8');
}
