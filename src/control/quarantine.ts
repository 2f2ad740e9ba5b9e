/**
 * `pgtide skip` and `pgtide quarantine list | replay | drop` (docs/quarantine.md):
 * each opens the target, acts on the `pgtide` schema, and closes it.
 */
import type postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import type { PgtideConfig } from './config.js';
import { originName } from './config.js';
import { postgresTargetUrl } from './target-config.js';
import { fromServerError, PgtideError } from '../core/errors.js';
import { parseLsn, ZERO_LSN, type Lsn } from '../core/lsn.js';
import { migrateStateSchema } from '../state/state-schema.js';
import { deleteQuarantined, listQuarantine, readQuarantined, requestSkip, type ApplyStop, type QuarantineRow } from '../state/quarantine-state.js';
import { replayChanges } from '../sinks/postgres/quarantine-replay.js';
import type { QuarantinedChange } from '../sinks/postgres/quarantine-record.js';
import { serverErrorFields } from '../core/error-class.js';

async function withTarget<T>(config: PgtideConfig, what: string, work: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = openPostgres(postgresTargetUrl(config, what), 'admin', { max: 1, connect_timeout: 15, onnotice: () => {} });
  try {
    await migrateStateSchema(sql).catch((e: unknown) => { throw e instanceof PgtideError ? e : fromServerError(e, 'target'); });
    return await work(sql);
  } finally {
    await sql.end({ timeout: 2 });
  }
}

export function parseLsnOption(text: string): Lsn {
  try {
    return parseLsn(text);
  } catch {
    throw new PgtideError('CONFIG_INVALID', `--lsn ${JSON.stringify(text)} is not an LSN; write it as PostgreSQL does, e.g. 0/1A2B3C8 (pgtide status and pgtide quarantine list show commit LSNs)`);
  }
}

/** `pgtide skip [--lsn X]`: what the next start will skip. */
export function skipCommand(config: PgtideConfig, lsn: Lsn | undefined): Promise<ApplyStop> {
  return withTarget(config, 'pgtide skip', async (sql) => {
    const [row] = await sql.unsafe<{ end_lsn: string | null }[]>(`SELECT end_lsn::text FROM pgtide.apply_progress WHERE subscription = $1`, [config.name]);
    return requestSkip(sql, config.name, lsn, row?.end_lsn ? parseLsn(row.end_lsn) : ZERO_LSN);
  });
}

export function listCommand(config: PgtideConfig): Promise<QuarantineRow[]> {
  return withTarget(config, 'pgtide quarantine list', (sql) => listQuarantine(sql, config.name));
}

export function dropCommand(config: PgtideConfig, id: string): Promise<void> {
  return withTarget(config, 'pgtide quarantine drop', (sql) => deleteQuarantined(sql, config.name, checkId(id)));
}

function checkId(id: string): string {
  if (!/^\d{1,18}$/.test(id.trim())) throw new PgtideError('QUARANTINE_NOT_FOUND', `--id ${JSON.stringify(id)} is not a quarantine id; pgtide quarantine list --config F shows the ids.`);
  return id.trim();
}

/**
 * Applies one quarantined transaction in one target transaction, with
 * session_replication_role = replica as apply runs, under an origin of this
 * subscription's own (`<origin>_q`, so a reverse edge of a two-way pair filters
 * the rows as it filters pgtide's: docs/topologies.md), and deletes it from
 * quarantine in the same transaction. On failure nothing changes.
 */
export function replayCommand(config: PgtideConfig, id: string): Promise<{ readonly row: QuarantineRow; readonly applied: number }> {
  const checked = checkId(id);
  return withTarget(config, 'pgtide quarantine replay', async (sql) => {
    const [db] = await sql.unsafe<{ oid: number }[]>(`SELECT oid::int AS oid FROM pg_database WHERE datname = current_database()`);
    const origin = `${originName(config, db!.oid)}_q`;
    await sql.unsafe(`SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`, [origin]);
    await sql.unsafe(`SELECT pg_replication_origin_session_setup($1)`, [origin]).catch((e: unknown) => {
      throw new PgtideError('SLOT_IN_USE', `another pgtide quarantine replay of subscription "${config.name}" runs now (replication origin ${origin} is in use); wait for it and try again.`, { sqlState: fromServerError(e, 'target').sqlState, cause: e });
    });
    try {
      await sql.unsafe(`BEGIN`);
      try {
        await sql.unsafe(`SET LOCAL session_replication_role = replica`);
        const { row, changes } = await readQuarantined(sql, config.name, checked, true);
        const applied = await replayChanges((text, params = []) => sql.unsafe(text, params as string[]), changes as QuarantinedChange[]);
        await deleteQuarantined(sql, config.name, checked);
        await sql.unsafe(`COMMIT`);
        return { row, applied };
      } catch (error) {
        await sql.unsafe(`ROLLBACK`).catch(() => {});
        if (error instanceof PgtideError) throw error;
        const fields = serverErrorFields(error);
        const mapped = fromServerError(error, 'target');
        throw new PgtideError('QUARANTINE_REPLAY_FAILED', `replaying quarantined transaction ${checked} failed on the target: ${mapped.message}${fields.detail ? ` DETAIL: ${fields.detail}` : ''}. Nothing of it was applied and it stays quarantined; fix the cause on the target and replay again, or drop it.`, { sqlState: mapped.sqlState, detail: fields.detail, cause: error });
      }
    } finally {
      await sql.unsafe(`SELECT pg_replication_origin_session_reset()`).catch(() => {});
      await sql.unsafe(`SELECT pg_replication_origin_drop($1)`, [origin]).catch(() => {});
    }
  });
}
