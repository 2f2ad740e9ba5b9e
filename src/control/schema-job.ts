/**
 * `pgtide schema copy|diff` and the `schema.bootstrap` step of `pgtide start`:
 * which tables are in scope (the publications', as the engine follows them),
 * the connections, and the log lines. The work itself is in src/schema/.
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { openPostgres } from '../pg/connect.js';
import { PgtideError } from '../core/errors.js';
import type { QualifiedName } from '../core/sql.js';
import { defaultPublicationTables, publicationExists, publishedTables } from '../source/source-catalog.js';
import { compareSchemas, copySchema, type SchemaComparison, type SchemaCopyResult } from '../schema/bootstrap.js';
import { publicationNames, type PgtideConfig } from './config.js';
import { postgresTargetUrl } from './target-config.js';

/**
 * The tables whose schema is copied: those the followed publications publish; when
 * pgtide manages the publication and has not created it yet, the tables it would
 * create it for (`tables:`, or every user table).
 */
export async function schemaScope(source: postgres.Sql, config: PgtideConfig): Promise<readonly QualifiedName[]> {
  const publications = publicationNames(config);
  const absent: string[] = [];
  for (const name of publications) if (!(await publicationExists(source, name))) absent.push(name);
  if (absent.length === 0) return publishedTables(source, publications);
  if (config.publication) {
    throw new PgtideError('PUBLICATION_MISSING', `publication${absent.length > 1 ? 's' : ''} ${absent.map((p) => `"${p}"`).join(', ')} ${absent.length > 1 ? 'do' : 'does'} not exist on the source, so there are no tables to copy the schema of. Create ${absent.length > 1 ? 'them' : 'it'} on the source, or remove \`publication:\` from the config to copy \`tables:\` (or every table).`);
  }
  return config.tables ?? (await defaultPublicationTables(source)).tables;
}

async function withPools<T>(config: PgtideConfig, work: (source: postgres.Sql, target: postgres.Sql) => Promise<T>): Promise<T> {
  const site = { max: 1, connect_timeout: 15, onnotice: () => {}, idle_timeout: 30 } as const;
  const source = openPostgres(config.source.url, 'catalog', site);
  const target = openPostgres(postgresTargetUrl(config, 'the schema copy'), 'admin', site);
  try {
    return await work(source, target);
  } finally {
    await Promise.allSettled([source.end({ timeout: 2 }), target.end({ timeout: 2 })]);
  }
}

export async function diffSchema(config: PgtideConfig): Promise<SchemaComparison> {
  return withPools(config, async (source, target) => compareSchemas(source, target, await schemaScope(source, config)));
}

export async function runSchemaCopy(config: PgtideConfig, options: { readonly applyDiff: boolean; readonly logger: Logger }): Promise<SchemaCopyResult> {
  return withPools(config, async (source, target) => copyWithLog(source, target, await schemaScope(source, config), options.applyDiff, options.logger));
}

/**
 * The `schema.bootstrap` step of a start, on the engine's pools, for the tables it
 * follows: creates what is missing; differences are logged, not changed (the
 * start-up checks stop on the ones replication cannot live with).
 */
export async function bootstrapSchema(source: postgres.Sql, target: postgres.Sql, tables: readonly QualifiedName[], logger: Logger): Promise<void> {
  const result = await copyWithLog(source, target, tables, false, logger);
  const { differences } = result.comparison.plan;
  for (const d of differences) logger.warn({ object: d.object }, `schema difference left as it is: ${d.object}: ${d.message} (see pgtide schema diff)`);
  if (result.applied.length === 0) logger.info({ tables: result.comparison.source.tables.length }, 'schema bootstrap: the target has every object the replicated tables need');
}

async function copyWithLog(source: postgres.Sql, target: postgres.Sql, tables: readonly QualifiedName[], applyDiff: boolean, logger: Logger): Promise<SchemaCopyResult> {
  const result = await copySchema(source, target, tables, {
    applyDiff,
    onApplied: (s) => logger.info({ object: s.object, phase: s.phase }, `schema: ${s.sql.startsWith('CREATE') ? 'created' : 'changed'} ${s.object}`),
  });
  for (const skipped of result.comparison.plan.skipped) logger.info(`schema: left out ${skipped}`);
  return result;
}
