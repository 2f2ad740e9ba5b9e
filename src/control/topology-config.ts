/**
 * The config fields for topologies beyond one source and one target
 * (docs/topologies.md): which origins an edge forwards, and the column a
 * consolidating edge fills with its source's tag.
 */
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';

/** An origin name, `*` matching any run of characters (origin names end in a database OID). */
const originPattern = z.string().min(1).max(200);

/**
 * `any` (the default, PostgreSQL's own default for CREATE SUBSCRIPTION): forward every
 * transaction, so a chain A → B → C carries A's changes to C without further settings.
 * `none` silently drops whatever the source received by replication, which in a chain is
 * data loss; a loop under `any` instead is refused by `pgtide check`, and an echoed row
 * stops apply with a duplicate key rather than passing unnoticed.
 */
export const originsSetting = z.union([
  z.literal('any'),
  z.literal('none'),
  z.object({ allow: z.array(originPattern).min(1) }).strict(),
  z.object({ deny: z.array(originPattern).min(1) }).strict(),
]).default('any');

/**
 * A column only the target has, set to `value` in every row this edge writes (initial
 * copy included). It also joins the key rows are matched by, so sources whose keys
 * overlap can share a table whose primary key includes the tag.
 */
export const sourceTagSetting = z.object({
  column: z.string().min(1).max(63),
  value: z.string(),
}).strict().optional();

/**
 * Continuous sequence sync copies each source sequence's value to the target, forward only.
 * With `origins: none` the edge belongs to a pair or mesh whose tables are written on several
 * nodes: synced both ways, every node's sequences would end at the same value and hand out
 * the same next keys. Such nodes need sequences that cannot collide.
 */
export function refuseSharedSequenceSync(config: { readonly origins: z.infer<typeof originsSetting>; readonly sequences: { readonly enabled: boolean } }): void {
  if (config.origins !== 'none' || !config.sequences.enabled) return;
  throw new ConfigError('origins: none says the tables of this edge are written on several nodes (a two-way pair or a mesh), and continuous sequence sync (sequences.enabled, on by default) would then bring every node\'s sequences to the same value, so the nodes would hand out the same keys. Set `sequences: { enabled: false }` in this config and give each node sequences that cannot collide: `pgtide sequences install` (prefixed values) or `pgtide sequences partition` (one residue per node); see docs/sequences.md.');
}
