/**
 * Before origin names carried the target database's OID, a subscription used
 * `pgtide_<name>`. On the first start under the new name that origin is
 * retired: it would otherwise keep one of the target cluster's replication
 * origin state entries (max_replication_slots, or max_active_replication_origins
 * on 18+) for good. Dropping it is harmless even when an older pgtide of
 * another database still uses that name: its position of record is its
 * apply_progress row, and it creates the origin again at its next start. An
 * origin bound to a running session cannot be dropped; that is left alone.
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';

export async function retireLegacyOrigin(target: postgres.Sql, legacyName: string, logger: Logger): Promise<void> {
  const rows = await target.unsafe(`SELECT 1 FROM pg_replication_origin WHERE roname = $1`, [legacyName]).catch(() => []);
  if (rows.length === 0) return;
  await target.unsafe(`SELECT pg_replication_origin_drop($1)`, [legacyName]).then(
    () => logger.info({ origin: legacyName }, 'dropped the replication origin of the older naming (origins now carry the target database OID)'),
    (error: unknown) => logger.info({ origin: legacyName, reason: error instanceof Error ? error.message : String(error) }, 'the replication origin of the older naming is still in use; left in place'),
  );
}
