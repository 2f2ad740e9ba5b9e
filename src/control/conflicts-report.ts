/**
 * `pgtide conflicts`: what the conflict log on the target holds for this
 * subscription — a summary by kind, resolution and table, and the latest rows.
 */
import { openPostgres } from '../pg/connect.js';
import type { PgtideConfig } from './config.js';
import { postgresTargetUrl } from './target-config.js';
import { fromServerError } from '../core/errors.js';

export interface ConflictSummaryRow {
  readonly kind: string;
  readonly resolution: string;
  readonly table: string;
  readonly count: number;
  readonly first: Date;
  readonly last: Date;
}

export interface ConflictLogRow {
  readonly id: string;
  readonly kind: string;
  readonly resolution: string;
  readonly table: string;
  readonly key: unknown;
  readonly remoteOld: unknown;
  readonly remoteNew: unknown;
  readonly localRow: unknown;
  readonly localOrigin: string | null;
  /** The unique index the local row was met on (update_exists, multiple_unique_conflicts). */
  readonly index: string | null;
  readonly localCommitTime: Date | null;
  readonly sourceXid: string | null;
  readonly sourceCommitLsn: string | null;
  readonly sourceCommitTime: Date | null;
  readonly sourceOrigin: string | null;
  readonly loggedAt: Date;
}

export interface ConflictsReport {
  readonly subscription: string;
  readonly total: number;
  readonly summary: readonly ConflictSummaryRow[];
  /** The latest rows, newest first. */
  readonly latest: readonly ConflictLogRow[];
}

export async function collectConflicts(config: PgtideConfig, limit: number): Promise<ConflictsReport> {
  const target = openPostgres(postgresTargetUrl(config, 'pgtide conflicts'), 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    const [present] = await target.unsafe<{ present: boolean }[]>(`SELECT to_regclass('pgtide.conflict_log') IS NOT NULL AS present`);
    if (!present?.present) return { subscription: config.name, total: 0, summary: [], latest: [] };
    const summary = await target.unsafe<{ kind: string; resolution: string; table_name: string; n: number; first: Date; last: Date }[]>(
      `SELECT kind, resolution, table_name, count(*)::int AS n, min(logged_at) AS first, max(logged_at) AS last
         FROM pgtide.conflict_log WHERE subscription = $1 GROUP BY 1, 2, 3 ORDER BY n DESC, 3, 1, 2`, [config.name]);
    const latest = await target.unsafe<{
      id: string; kind: string; resolution: string; table_name: string; key: unknown; remote_old: unknown; remote_new: unknown; local_row: unknown;
      local_origin: string | null; local_commit_time: Date | null; source_xid: string | null; source_commit_lsn: string | null;
      source_commit_time: Date | null; source_origin: string | null; logged_at: Date; index_name: string | null;
    }[]>(
      `SELECT id::text AS id, kind, resolution, table_name, key, remote_old, remote_new, local_row, local_origin, local_commit_time,
              source_xid::text AS source_xid, source_commit_lsn::text AS source_commit_lsn, source_commit_time, source_origin, logged_at,
              to_jsonb(l) ->> 'index_name' AS index_name
         FROM pgtide.conflict_log AS l WHERE subscription = $1 ORDER BY id DESC LIMIT $2::text::int`, [config.name, String(limit)]);
    return {
      subscription: config.name,
      total: summary.reduce((sum, row) => sum + row.n, 0),
      summary: summary.map((r) => ({ kind: r.kind, resolution: r.resolution, table: r.table_name, count: r.n, first: r.first, last: r.last })),
      latest: latest.map((r) => ({
        id: r.id, kind: r.kind, resolution: r.resolution, table: r.table_name, key: r.key, remoteOld: r.remote_old, remoteNew: r.remote_new,
        localRow: r.local_row, localOrigin: r.local_origin, index: r.index_name, localCommitTime: r.local_commit_time, sourceXid: r.source_xid,
        sourceCommitLsn: r.source_commit_lsn, sourceCommitTime: r.source_commit_time, sourceOrigin: r.source_origin, loggedAt: r.logged_at,
      })),
    };
  } catch (error) {
    throw fromServerError(error, 'target');
  } finally {
    await target.end({ timeout: 2 });
  }
}

export function formatConflicts(report: ConflictsReport): string {
  if (report.total === 0) return `subscription ${report.subscription}: no conflicts logged`;
  const lines = [`subscription ${report.subscription}: ${report.total} conflict(s) logged`, '', 'count  kind                       resolution    table'];
  for (const s of report.summary) lines.push(`${String(s.count).padStart(5)}  ${s.kind.padEnd(26)} ${s.resolution.padEnd(13)} ${s.table}`);
  lines.push('', `latest ${report.latest.length}:`);
  for (const r of report.latest) {
    const source = `xid ${r.sourceXid ?? '?'}${r.sourceCommitLsn ? `, commit LSN ${r.sourceCommitLsn}` : ''}${r.sourceCommitTime ? ` at ${r.sourceCommitTime.toISOString()}` : ''}${r.sourceOrigin ? `, origin ${r.sourceOrigin}` : ''}`;
    lines.push(`#${r.id} ${r.loggedAt.toISOString()} ${r.kind} → ${r.resolution} on ${r.table} key ${JSON.stringify(r.key)} (source ${source})`);
    if (r.remoteNew !== null) lines.push(`    remote new: ${JSON.stringify(r.remoteNew)}`);
    if (r.localRow !== null) lines.push(`    local:      ${JSON.stringify(r.localRow)}${r.index ? ` on ${r.index}` : ''}${r.localCommitTime ? ` committed ${r.localCommitTime.toISOString()}` : ''}${r.localOrigin ? ` by origin ${r.localOrigin}` : ''}`);
    else if (r.kind === 'update_deleted') lines.push(`    deleted:    ${r.localCommitTime ? `committed ${r.localCommitTime.toISOString()}` : 'commit time unknown'}${r.localOrigin ? ` by origin ${r.localOrigin}` : ''}`);
  }
  return lines.join('\n');
}
