/**
 * DDL without capture (no superuser on the source): a column that a Relation
 * message carries and the target lacks is added on the target, in the apply
 * batch, and apply goes on. Additive only, and only for built-in types: a
 * Relation message names a column's type by OID, and only OIDs below
 * FirstNormalObjectId (16384) are the same on every server. Anything else
 * keeps the COLUMN_MISMATCH stop.
 */
import type { RelationColumn } from '../../protocol/messages.js';
import { quoteIdent } from '../../core/sql.js';
import type { CatalogQuery } from './table-catalog.js';

const FIRST_NORMAL_OBJECT_ID = 16384;

export type MissingColumnsHook = (table: string, missing: readonly RelationColumn[]) => void;

/** True when every missing column could be added (the caller then looks the table up again). */
export async function addMissingColumns(query: CatalogQuery, table: string, missing: readonly RelationColumn[]): Promise<boolean> {
  if (missing.length === 0 || missing.some((c) => c.typeOid >= FIRST_NORMAL_OBJECT_ID)) return false;
  const types = await query(`SELECT format_type(t.oid, t.mod) AS type FROM unnest($1::text::oid[], $2::text::int[]) WITH ORDINALITY AS t(oid, mod, n) ORDER BY n`,
    [`{${missing.map((c) => c.typeOid).join(',')}}`, `{${missing.map((c) => c.typeMod).join(',')}}`]) as readonly { type: string | null }[];
  if (types.length !== missing.length || types.some((t) => t.type === null)) return false;
  const adds = missing.map((c, i) => `ADD COLUMN IF NOT EXISTS ${quoteIdent(c.name)} ${types[i]!.type!}`);
  await query(`ALTER TABLE ${table} ${adds.join(', ')}`, []);
  return true;
}
