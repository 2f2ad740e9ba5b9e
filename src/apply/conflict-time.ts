/**
 * The time-based policies and origin-differs detection (docs/conflicts.md,
 * "Time-based policies"): which tables need the local row's last writer, and
 * the decision itself. The PostgreSQL sink evaluates the same decision in SQL
 * (sinks/postgres/conflict-time-statements.ts, `remoteWinsSql`); this copy is
 * the specification both are tested against.
 *
 * A local row "differs in origin" when its last writer is known (its xmin has
 * a commit timestamp) and is not this edge's replication origin: a local
 * write (origin 0) or another edge. That is PostgreSQL 18's
 * update_origin_differs/delete_origin_differs. A row whose writer is unknown
 * (written before track_commit_timestamp was on, or by this very batch, whose
 * transaction has not committed yet) is not a conflict, as in PostgreSQL.
 */
import type { ConflictPolicy, ConflictSettings } from './conflict-policy.js';

export const TIME_POLICIES = ['last_update_wins', 'first_update_wins'] as const;
export type TimePolicy = (typeof TIME_POLICIES)[number];

/** The writer name of rows written on the target by anything but a pgtide edge (replication origin 0). */
export const LOCAL_WRITER = 'local';

/** Rank of a writer not in `nodeOrder`: after every listed one. */
export const UNLISTED_RANK = 2147483647;

export function isTimePolicy(policy: ConflictPolicy): policy is TimePolicy {
  return (TIME_POLICIES as readonly string[]).includes(policy);
}

/** Whether runs of a table under `policy` compare the local row's last writer with this edge. */
export function checksOrigin(settings: ConflictSettings, policy: ConflictPolicy): boolean {
  return isTimePolicy(policy) || (settings.detectOriginDiffers === true && (policy === 'skip' || policy === 'apply_remote'));
}

/** Whether any table's policy needs `track_commit_timestamp = on` on the target. */
export function needsCommitTimestamps(settings: ConflictSettings): boolean {
  return settings.detectOriginDiffers === true || isTimePolicy(settings.policy) || [...settings.tables.values()].some(isTimePolicy);
}

/**
 * Whether any table is judged by commit time. A large transaction applied
 * while it streams has no commit time yet, so such an edge applies large
 * transactions at their commit instead (buffered, spilled beyond the memory cap).
 */
export function judgesByTime(settings: ConflictSettings): boolean {
  return isTimePolicy(settings.policy) || [...settings.tables.values()].some(isTimePolicy);
}

/** 0-based position in the tie-break order; UNLISTED_RANK when absent. */
export function writerRank(nodeOrder: readonly string[] | undefined, writer: string): number {
  const at = nodeOrder?.indexOf(writer) ?? -1;
  return at < 0 ? UNLISTED_RANK : at;
}

/**
 * The writer name of a replication origin: a pgtide edge's origin is
 * `pgtide_<subscription>_<database oid>` (control/config.ts originName), so
 * its writer is the subscription's name; any other origin is its own name.
 */
export function writerOfOrigin(roname: string | undefined): string {
  if (roname === undefined) return LOCAL_WRITER;
  return /^pgtide_(.*)_[0-9]+$/.exec(roname)?.[1] ?? roname;
}

export interface CommitStamp {
  /** Microseconds (any epoch, both sides the same); undefined: not known. */
  readonly time: bigint | undefined;
  readonly rank: number;
}

/**
 * Whether the remote change replaces the local row. Equal times: the writer
 * ranked first in `nodeOrder` wins, and with equal ranks (neither listed) the
 * local row stays, so a tie never flips a row back and forth. A local row
 * whose commit time is unknown counts as the oldest.
 */
export function remoteWins(policy: ConflictPolicy, remote: CommitStamp, local: CommitStamp): boolean {
  if (policy === 'skip' || policy === 'error') return false;
  if (policy === 'apply_remote') return true;
  const tieRemote = remote.rank < local.rank;
  if (remote.time === undefined) return policy === 'last_update_wins';
  if (local.time === undefined) return policy === 'last_update_wins';
  if (remote.time === local.time) return tieRemote;
  return policy === 'last_update_wins' ? remote.time > local.time : remote.time < local.time;
}
