/** What an error met during the initial copy means for the user. */
import { fromServerError, PgtideError } from '../core/errors.js';
import { tableMissingOnTarget } from '../core/missing-table.js';
import type { Side, TableJob } from './table-job.js';

export function sqlStateOf(error: unknown): string | undefined {
  const code = (typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined);
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The login name in a connection URL, as an SQL role name for a GRANT. */
function roleOf(url: string | undefined): string {
  let name = '';
  try { name = url ? decodeURIComponent(new URL(url).username) : ''; } catch { /* not a URL */ }
  if (!name) return '<source user>';
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** Maps an error met while copying `job` (or, without a job, while setting up). */
export function copyError(error: unknown, side: Side, job?: TableJob, sourceUrl?: string): PgtideError {
  if (error instanceof PgtideError) return error;
  const sqlState = sqlStateOf(error);
  if (job && side === 'source' && sqlState === '42501') {
    const base = fromServerError(error, side);
    return new PgtideError('PERMISSION_DENIED', `the source user may not read ${job.qualified} for the initial copy (${base.message.replace(/^permission denied on the source server: /, '').replace(/\. Grant the privilege.*$/, '')}). Run on the source: GRANT SELECT ON ${job.qualified} TO ${roleOf(sourceUrl)}; then start pgtide again (see docs/privileges.md).`, { sqlState, cause: error });
  }
  if (job && sqlState === '42P01') {
    if (side === 'target') return tableMissingOnTarget([job.qualified], error);
    return new PgtideError('TABLE_MISSING_ON_SOURCE', `table ${job.qualified} does not exist on the source (was it dropped during the copy?). Remove it from the publication or recreate it, then restart.`, { sqlState, cause: error });
  }
  if (job && sqlState === '23505') {
    const base = fromServerError(error, side);
    return new PgtideError('COPY_CONFLICT', `copying ${job.qualified}: ${base.message}. The initial copy keeps the rows already on the target (as CREATE SUBSCRIPTION does), and one of them has the key of a source row. Delete the conflicting rows on the target, or set copy.truncateFirst: true to empty the tables before copying.`, { sqlState, cause: error });
  }
  if (job && sqlState === '42703') {
    const base = fromServerError(error, side);
    return new PgtideError('COLUMN_MISMATCH', `copying ${job.qualified}: ${base.message}. Make the ${side} table's columns match ('pgtide schema diff --config <file>' lists the differences, 'pgtide schema copy --apply-diff' adds missing columns on the target), or list the columns to copy for this table.`, { sqlState, cause: error });
  }
  const base = fromServerError(error, side);
  if (!job) return base;
  return new PgtideError(base.code, `copying ${job.qualified}: ${base.message}`, { sqlState: base.sqlState, retryable: base.retryable, cause: error });
}
