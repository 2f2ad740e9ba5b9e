/**
 * Wires DDL replication into a subscription: installing the capture on the
 * source (`ddl.capture`, `pgtide ddl install`), and building the DDL stage of
 * each streaming attempt, with the PostgreSQL sink's DDL target behind it.
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { publicationNames, type PgtideConfig } from './config.js';
import { postgresTargetUrl } from './target-config.js';
import { execWithDdl, installDdlCapture, readDdlKey, uninstallDdlCapture, type DdlInstallReport } from '../source/ddl-capture.js';
import { publicationExists, publishedTables } from '../source/source-catalog.js';
import { openPostgres } from '../pg/connect.js';
import { PgtideError } from '../core/errors.js';
import { DdlStage } from '../apply/ddl-stage.js';
import type { TransactionSink } from '../changes/change.js';
import type { TableGateState } from '../core/table-sync.js';
import type { Lsn } from '../core/lsn.js';
import { PostgresDdlTarget } from '../sinks/postgres/ddl-apply.js';
import type { ApplyWriter } from '../sinks/postgres/apply-writer.js';
import type { DeferredIndexBuilder } from '../sinks/postgres/deferred-indexes.js';
import { ddlSkips, recordStoppedDdl, skipStoppedDdl, type StoppedDdl } from '../state/ddl-state.js';

/** Installs (or refreshes) the capture triggers for this subscription's publications. */
export function installCapture(source: postgres.Sql, config: PgtideConfig, tableSchemas: readonly string[], execOnly = false): Promise<DdlInstallReport> {
  return installDdlCapture(source, {
    publications: publicationNames(config),
    newTableSchemas: config.ddl.newTableSchemas ?? [...new Set(tableSchemas)],
    execOnly,
  });
}

/**
 * Puts the DDL stage in front of a writer (the main one, or one applying a streamed
 * transaction); `tables` is the gate's map, which renames, creates and drops keep current.
 */
export async function ddlStages(options: {
  readonly tables: Map<string, TableGateState>;
  readonly config: PgtideConfig;
  readonly source: postgres.Sql;
  readonly target: postgres.Sql;
  readonly deferredIndexes: DeferredIndexBuilder;
  /** A table was put back to init for a re-copy, in the batch committing at that LSN (ddl.rewriteVolatile). */
  readonly onRecopy?: (table: string, commitLsn: Lsn) => void;
  readonly logger: Logger;
}): Promise<(writer: ApplyWriter) => TransactionSink> {
  const { tables, config, source, target, deferredIndexes, logger, onRecopy } = options;
  const skip = await ddlSkips(target, config.name);
  return (writer) => new DdlStage(writer, {
    target: new PostgresDdlTarget(writer, {
      subscription: config.name,
      destructive: config.ddl.destructive,
      onError: config.ddl.onError,
      rewriteVolatile: config.ddl.rewriteVolatile,
      ...(onRecopy ? { onRecopy } : {}),
      tables,
      recordStop: (stop) => recordStoppedDdl(target, config.name, stop),
      deferredIndexes,
      logger,
    }),
    loadKey: () => readDdlKey(source),
    skip,
    logger,
  });
}

async function withServer<T>(url: string, work: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = openPostgres(url, 'admin', { max: 1, connect_timeout: 15, onnotice: () => {} });
  try {
    return await work(sql);
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/** `pgtide ddl install`: for the publication(s) of the config, which must exist (pgtide start creates its own). */
export function installCaptureCommand(config: PgtideConfig, execOnly = false): Promise<DdlInstallReport> {
  return withServer(config.source.url, async (source) => {
    const names = publicationNames(config);
    for (const name of names) {
      if (!(await publicationExists(source, name))) {
        throw new PgtideError('PUBLICATION_MISSING', `publication "${name}" does not exist on the source yet. Run \`pgtide start\` once (it creates it), or create it, then install DDL capture; or set ddl.capture: true to install at start.`);
      }
    }
    const tables = await publishedTables(source, names);
    return installCapture(source, config, tables.map((t) => t.schema), execOnly);
  });
}

/** `pgtide ddl exec`: schema changes run on the source with their signed messages (no event triggers needed). */
export function execCommand(config: PgtideConfig, statements: string): Promise<void> {
  return withServer(config.source.url, (source) => execWithDdl(source, statements));
}

export function uninstallCaptureCommand(config: PgtideConfig): Promise<void> {
  return withServer(config.source.url, (source) => uninstallDdlCapture(source));
}

/** `pgtide ddl skip`: the next start moves past the DDL change the last stop named. */
export function skipStoppedCommand(config: PgtideConfig): Promise<StoppedDdl[]> {
  return withServer(postgresTargetUrl(config, 'pgtide ddl skip'), (target) => skipStoppedDdl(target, config.name));
}
