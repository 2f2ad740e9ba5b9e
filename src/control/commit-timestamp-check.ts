/**
 * Start-up and `pgtide check` refuse conflict settings that need the local
 * rows' commit times and origins (time-based policies, detectOriginDiffers)
 * on a target with `track_commit_timestamp = off`: without them every such
 * table would stop at its first conflict-checked statement, after the copy.
 * The setting needs a server restart, so the error says so.
 */
import type postgres from 'postgres';
import type { PgtideConfig } from './config.js';
import { conflictSettings } from './conflict-config.js';
import { needsCommitTimestamps } from '../apply/conflict-time.js';
import { commitTimestampOff } from '../sinks/postgres/conflict-apply.js';
import { fromServerError } from '../core/errors.js';
import { openPostgres } from '../pg/connect.js';
import { CLEANUP_MS, settleWithin } from '../pg/bounded.js';

export function needsCommitTimestampsFor(config: PgtideConfig): boolean {
  return needsCommitTimestamps(conflictSettings(config.conflicts));
}

/** Throws COMMIT_TIMESTAMP_OFF when the config needs commit timestamps and `target` has them off. */
export async function checkCommitTimestamps(target: postgres.Sql, config: PgtideConfig): Promise<void> {
  if (!needsCommitTimestampsFor(config)) return;
  const [row] = await target.unsafe<{ on: boolean }[]>(`SELECT current_setting('track_commit_timestamp') = 'on' AS on`)
    .catch((error: unknown) => { throw fromServerError(error, 'target'); });
  if (!row?.on) throw commitTimestampOff();
}

/** The same check on its own connection (for `pgtide check`). */
export async function checkCommitTimestampsAt(url: string, config: PgtideConfig): Promise<void> {
  if (!needsCommitTimestampsFor(config)) return;
  const sql: postgres.Sql = openPostgres(url, 'admin', { max: 1, connect_timeout: 15, onnotice: () => {} });
  try {
    await checkCommitTimestamps(sql, config);
  } finally {
    await settleWithin(sql.end({ timeout: 2 }), CLEANUP_MS);
  }
}
