/**
 * `pgtide status`: what a person needs to know at a glance — table states,
 * the applied position, lag in bytes and seconds, and how much WAL the slot
 * holds back on the source (a stopped subscriber's slot keeps WAL until the
 * source's disk fills).
 */
import { openPostgres } from '../pg/connect.js';
import { slotName, type PgtideConfig } from './config.js';
import { fromServerError, PgtideError } from '../core/errors.js';
import { formatLsn, parseLsn, type Lsn } from '../core/lsn.js';
import { StateStore, type TableStateRow } from '../state/state-store.js';
import { readLastError, type LastErrorRow } from '../state/last-error.js';
import { countQuarantined } from '../state/quarantine-state.js';
import { ndjsonStatePath, postgresTargetUrl } from './target-config.js';
import { NdjsonStateFile } from '../sinks/ndjson/state-file.js';
import type postgres from 'postgres';

export interface StatusReport {
  readonly subscription: string;
  readonly tables: readonly TableStateRow[];
  readonly appliedLsn: Lsn | undefined;
  readonly sourceLsn: Lsn | undefined;
  readonly lagBytes: number | undefined;
  readonly lagSeconds: number | undefined;
  readonly lastCommitTime: Date | null;
  readonly slot: { readonly name: string; readonly active: boolean; readonly retainedBytes: number; readonly confirmedLsn: Lsn | undefined } | undefined;
  readonly sourceError: string | undefined;
  readonly sequences: readonly { readonly name: string; readonly sourceValue: string | null; readonly targetValue: string | null; readonly syncedAt: Date | null }[];
  /** The last error the engine retried or stopped on; cleared once apply made progress again. */
  readonly lastError: LastErrorRow | undefined;
  /** Source transactions held in pgtide.quarantine (docs/quarantine.md). */
  readonly quarantined?: number;
}

export async function collectStatus(config: PgtideConfig): Promise<StatusReport> {
  if (config.target.kind === 'ndjson') return ndjsonStatus(config, config.target);
  const target = openPostgres(postgresTargetUrl(config, 'pgtide status'), 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  const source = openPostgres(config.source.url, 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    const store = new StateStore(target, config.name);
    const exists = await target.unsafe(`SELECT to_regclass('pgtide.subscription') IS NOT NULL AS ok`).catch((e: unknown) => { throw fromServerError(e, 'target'); });
    if (!exists[0]?.ok || !(await store.getSubscription())) {
      throw new PgtideError('STATE_CORRUPT', `subscription "${config.name}" has never run against this target. Start it with \`pgtide start --config <file>\`.`);
    }
    const tables = await store.tableStates();
    const progress = await store.progress();
    const subscription = await store.getSubscription();
    // The progress row is the position of record (it commits with the data); the origin can run
    // ahead of it on PostgreSQL 16+ after an aborted apply transaction, until the next start.
    const appliedLsn = progress?.endLsn;
    const sequences = await target.unsafe<{ name: string; source_value: string | null; target_value: string | null; synced_at: Date | null }[]>(
      `SELECT format('%I.%I', schema_name, sequence_name) AS name, source_value::text, target_value::text, synced_at FROM pgtide.sequence_state WHERE subscription = $1 ORDER BY 1`, [config.name]).catch(() => []);
    const lastError = await readLastError(target, config.name);
    const onSource = await slotAndLag(source, config, appliedLsn, subscription?.ackedLsn, Math.max(progress?.commitTime?.getTime() ?? 0, subscription?.ackedAt?.getTime() ?? 0));
    return { subscription: config.name, tables, appliedLsn, ...onSource, lastCommitTime: progress?.commitTime ?? null, sequences: sequences.map((s) => ({ name: s.name, sourceValue: s.source_value, targetValue: s.target_value, syncedAt: s.synced_at })), lastError, quarantined: await countQuarantined(target, config.name) };
  } finally {
    await Promise.allSettled([target.end({ timeout: 1 }), source.end({ timeout: 1 })]);
  }
}

/** An NDJSON target: the position and acknowledgement from its state file; no tables, sequences or recorded errors. */
async function ndjsonStatus(config: PgtideConfig, target: { readonly path: string; readonly statePath?: string | undefined }): Promise<StatusReport> {
  const state = await NdjsonStateFile.load(ndjsonStatePath(target), config.name);
  const subscription = await state.getSubscription();
  if (!subscription) {
    throw new PgtideError('STATE_CORRUPT', `subscription "${config.name}" has never run into ${target.path} (no state file at ${state.path}). Start it with \`pgtide start --config <file>\`.`);
  }
  const source = openPostgres(config.source.url, 'admin', { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    const appliedLsn = state.position?.endLsn;
    const commitTime = state.commitTime ? new Date(state.commitTime) : null;
    const onSource = await slotAndLag(source, config, appliedLsn, subscription.ackedLsn, Math.max(commitTime?.getTime() ?? 0, subscription.ackedAt?.getTime() ?? 0));
    return { subscription: config.name, tables: [], appliedLsn, ...onSource, lastCommitTime: commitTime, sequences: [], lastError: undefined };
  } finally {
    await source.end({ timeout: 1 }).catch(() => {});
  }
}

/** The source side of the report: its WAL position, the slot, and the lag behind what the target holds. */
async function slotAndLag(source: postgres.Sql, config: PgtideConfig, appliedLsn: Lsn | undefined, ackedLsn: Lsn | undefined, lastSeen: number): Promise<Pick<StatusReport, 'sourceLsn' | 'slot' | 'sourceError' | 'lagBytes' | 'lagSeconds'>> {
  let sourceLsn: Lsn | undefined;
  let slot: StatusReport['slot'];
  let sourceError: string | undefined;
  try {
    const [row] = await source.unsafe<{ lsn: string; active: boolean | null; retained: string | null; confirmed: string | null }[]>(
      `SELECT pg_current_wal_lsn()::text AS lsn, s.active, pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint::text AS retained, s.confirmed_flush_lsn::text AS confirmed
         FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`, [slotName(config)]);
    if (row) {
      sourceLsn = parseLsn(row.lsn);
      if (row.active !== null) slot = { name: slotName(config), active: row.active, retainedBytes: Number(row.retained ?? 0), confirmedLsn: row.confirmed ? parseLsn(row.confirmed) : undefined };
    }
  } catch (error) {
    sourceError = fromServerError(error, 'source').message;
  }
  // Caught up to the applied position, or to the last position acknowledged to the source:
  // pgtide acknowledges WAL that holds nothing for it (other databases, checkpoints) only once
  // everything before it is applied, and records that before sending it.
  const caughtUpTo = lagSource(appliedLsn, ackedLsn);
  const lagBytes = sourceLsn !== undefined && caughtUpTo !== undefined ? Math.max(0, Number(sourceLsn - caughtUpTo)) : undefined;
  const lagSeconds = lagBytes === undefined ? undefined : lagBytes > 0 && lastSeen > 0 ? Math.max(0, (Date.now() - lastSeen) / 1000) : 0;
  return { sourceLsn, slot, sourceError, lagBytes, lagSeconds };
}

function lagSource(applied: Lsn | undefined, acked: Lsn | undefined): Lsn | undefined {
  if (applied === undefined) return acked;
  if (acked === undefined) return applied;
  return applied > acked ? applied : acked;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export function formatStatus(report: StatusReport): string {
  const lines: string[] = [];
  lines.push(`subscription  ${report.subscription}`);
  lines.push(`applied LSN   ${report.appliedLsn !== undefined ? formatLsn(report.appliedLsn) : '(nothing applied yet)'}`);
  lines.push(`source LSN    ${report.sourceLsn !== undefined ? formatLsn(report.sourceLsn) : `(unavailable: ${report.sourceError ?? 'unknown'})`}`);
  lines.push(`lag           ${report.lagBytes !== undefined ? `${bytes(report.lagBytes)}, ${report.lagSeconds?.toFixed(1)} s` : 'unknown'}`);
  if (report.lastCommitTime) lines.push(`last commit   ${report.lastCommitTime.toISOString()}`);
  if (report.slot) lines.push(`slot          ${report.slot.name} (${report.slot.active ? 'active' : 'inactive'}), retains ${bytes(report.slot.retainedBytes)} of WAL on the source`);
  else if (!report.sourceError) lines.push(`slot          MISSING on the source`);
  if (report.lastError) {
    const e = report.lastError;
    lines.push(`last error    ${e.code}${e.sqlState ? ` (SQLSTATE ${e.sqlState})` : ''} at ${e.occurredAt.toISOString()}, ${e.retrying ? 'retrying' : 'not retried: pgtide stopped'}`);
    lines.push(`              ${e.message}`);
    if (e.detail) lines.push(`              DETAIL: ${e.detail}`);
    if (!e.retrying && (e.code === 'APPLY_CONFLICT' || e.code === 'APPLY_FAILED')) lines.push(`              fix the target and start again, or run pgtide skip to quarantine the failing transaction (docs/quarantine.md)`);
  }
  if (report.quarantined) lines.push(`quarantined   ${report.quarantined} source transaction(s) held instead of applied: pgtide quarantine list`);
  lines.push('');
  lines.push('tables');
  const width = Math.max(5, ...report.tables.map((t) => `${t.schema}.${t.name}`.length));
  for (const t of report.tables) {
    lines.push(`  ${`${t.schema}.${t.name}`.padEnd(width)}  ${t.state.padEnd(7)}  sync ${formatLsn(t.syncLsn).padEnd(12)}  rows copied ${t.rowsCopied}`);
  }
  if (report.sequences.length) {
    lines.push('');
    lines.push('sequences');
    const w = Math.max(8, ...report.sequences.map((s) => s.name.length));
    for (const s of report.sequences) lines.push(`  ${s.name.padEnd(w)}  source ${String(s.sourceValue ?? '-').padEnd(12)} target ${String(s.targetValue ?? '-').padEnd(12)} synced ${s.syncedAt?.toISOString() ?? 'never'}`);
  }
  return lines.join('\n');
}
