/**
 * DDL without capture (no superuser on the source): a column that a Relation
 * message carries and the target lacks is added on the target, in the apply
 * batch, and apply goes on. Additive only, and only for built-in types: a
 * Relation message names a column's type by OID, and only OIDs below
 * FirstNormalObjectId (16384) are the same on every server; and only when
 * pgtide's target role owns the table. Anything else keeps the
 * COLUMN_MISMATCH stop.
 */
import type { RelationColumn } from '../../protocol/messages.js';
import { quoteIdent } from '../../core/sql.js';
import type { CatalogQuery } from './catalog-query.js';

const FIRST_NORMAL_OBJECT_ID = 16384;

export type MissingColumnsHook = (table: string, missing: readonly RelationColumn[]) => void;

/** True when every missing column could be added (the caller then looks the table up again). */
export async function addMissingColumns(query: CatalogQuery, table: string, missing: readonly RelationColumn[]): Promise<boolean> {
  if (missing.length === 0 || missing.some((c) => c.typeOid >= FIRST_NORMAL_OBJECT_ID)) return false;
  // Only as the table's owner (ALTER TABLE needs it); otherwise COLUMN_MISMATCH says what to add.
  const types = await query(`SELECT format_type(t.oid, t.mod) AS type,
                                    (SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass($3)) AS owner
                               FROM unnest($1::text::oid[], $2::text::int[]) WITH ORDINALITY AS t(oid, mod, n) ORDER BY n`,
    [`{${missing.map((c) => c.typeOid).join(',')}}`, `{${missing.map((c) => c.typeMod).join(',')}}`, table]) as readonly { type: string | null; owner: boolean | null }[];
  if (types.length !== missing.length || types.some((t) => t.type === null || t.owner !== true)) return false;
  const adds = missing.map((c, i) => `ADD COLUMN IF NOT EXISTS ${quoteIdent(c.name)} ${types[i]!.type!}`);
  await query(`ALTER TABLE ${table} ${adds.join(', ')}`, []);
  return true;
}
