/**
 * The publication(s) a start follows, for any target kind: followed ones
 * must exist; the one pgtide manages is created when missing (always FOR
 * TABLE, see source-catalog.ts). Then the published tables, with a warning
 * for each the source could not update or delete once published.
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { PgtideError } from '../core/errors.js';
import { qualify } from '../core/sql.js';
import { createPublication, defaultPublicationTables, publicationExists, publishedTables, type PublishedTable } from '../source/source-catalog.js';
import { publicationName, publicationNames, type PgtideConfig } from './config.js';

export async function ensurePublications(source: postgres.Sql, config: PgtideConfig, logger: Logger): Promise<PublishedTable[]> {
  const publication = publicationName(config);
  const publications = publicationNames(config);
  const absent: string[] = [];
  for (const name of publications) if (!(await publicationExists(source, name))) absent.push(name);
  if (absent.length > 0) {
    if (config.publication) {
      const [first] = absent;
      throw new PgtideError('PUBLICATION_MISSING', `publication${absent.length > 1 ? 's' : ''} ${absent.map((p) => `"${p}"`).join(', ')} ${absent.length > 1 ? 'do' : 'does'} not exist on the source. Create ${absent.length > 1 ? 'them' : 'it'} there (CREATE PUBLICATION ${first} FOR TABLE ...), or remove \`publication:\` from the config to let pgtide create one for \`tables:\`.`);
    }
    await createPublication(source, publication, config.tables ?? await defaultTables(source));
    logger.info({ publication }, 'created publication on the source');
  }
  const tables = await publishedTables(source, publications);
  if (tables.length === 0) logger.warn({ publication }, 'the publication contains no tables; nothing will be replicated');
  for (const t of tables) {
    if (t.replicaIdentity === 'nothing' || (t.replicaIdentity === 'default' && !t.hasKey)) {
      logger.warn({ table: qualify(t.schema, t.name) }, 'table has no replica identity: the source will reject UPDATE and DELETE on it while it is published; give it a primary key or REPLICA IDENTITY FULL');
    }
  }
  return tables;
}

/** No `tables:` and no `publication:`: every user table, refusing any the source could no longer update or delete. */
async function defaultTables(source: postgres.Sql): Promise<readonly { readonly schema: string; readonly name: string }[]> {
  const found = await defaultPublicationTables(source);
  if (found.withoutIdentity.length > 0) {
    const names = found.withoutIdentity.map((t) => qualify(t.schema, t.name)).join(', ');
    throw new PgtideError('NO_REPLICA_IDENTITY', `table(s) ${names} have no replica identity (no primary key, and REPLICA IDENTITY is DEFAULT or NOTHING). Once published, the source would reject every UPDATE and DELETE on them, breaking the application. For each: add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL, or list only the tables to replicate under \`tables:\` in the config, leaving these out.`);
  }
  return found.tables;
}
