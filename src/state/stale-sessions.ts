/**
 * Apply sessions that pgtide gave up on (the stall watchdog fired while they
 * did not answer) may still be alive on the target: behind a blackholed path
 * the server does not learn that the client is gone until its TCP keepalive
 * gives up (tcp_keepalives_idle, two hours by default on Linux). Such a
 * session keeps the replication origin bound, so every new apply session
 * fails with 55006. pgtide ends the sessions it opened itself and abandoned,
 * by their backend pid, and no other.
 */
import type postgres from 'postgres';

/** Terminates the given apply backends (if still there); returns how many were signalled. */
export async function terminateAbandonedApplySessions(target: postgres.Sql, pids: readonly number[]): Promise<number> {
  if (pids.length === 0) return 0;
  // The application_name and database checks guard against a pid reused meanwhile. The filter
  // runs in a subquery fenced with OFFSET 0: quals of one level run in cost order, and
  // pg_terminate_backend must never see a row the filter did not keep.
  const rows = await target.unsafe<{ pid: number }[]>(
    `SELECT s.pid FROM (
       SELECT a.pid FROM pg_stat_activity a
        WHERE a.pid = ANY ($1::text::int[]) AND a.application_name = 'pgtide-apply' AND a.datname = current_database()
        OFFSET 0) s
      WHERE pg_terminate_backend(s.pid)`,
    [`{${pids.join(',')}}`]);
  return rows.length;
}
