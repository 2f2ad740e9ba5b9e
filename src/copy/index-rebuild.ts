/**
 * Secondary indexes that may be dropped for a copy and built again after it.
 * Maintaining an index row by row during COPY is much slower than one sorted
 * build afterwards: 1.5 M rows with a primary key and three secondary
 * indexes took 23.7 s with the indexes in place and 6.9 s dropped and
 * rebuilt (bench/experiments/index-rebuild.ts, this 2-core machine).
 * The drop, the copy and the rebuilds share the copy's transaction, so a
 * failure or a crash leaves the indexes as they were.
 *
 * Left in place, so nothing about them can be lost: the primary key and
 * indexes behind constraints, unique indexes (a foreign key may use one),
 * the replica identity index, the CLUSTER index, invalid indexes, indexes in
 * a non-default tablespace or with a comment, partitioned indexes (whose
 * definition reads ON ONLY) and indexes of partitions (attached to their
 * parent's index).
 */
import type { Queryable } from '../pg/copy-in.js';
import type { TableJob } from './table-job.js';
import { copyError } from './copy-errors.js';

const SECONDARY_INDEXES = `
  SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE i.indrelid = to_regclass($1)
     AND NOT i.indisprimary AND NOT i.indisunique AND NOT i.indisexclusion
     AND NOT i.indisreplident AND NOT i.indisclustered AND i.indisvalid
     AND c.relkind = 'i' AND c.reltablespace = 0
     AND obj_description(i.indexrelid, 'pg_class') IS NULL
     AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
     AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = i.indexrelid AND d.refclassid = 'pg_class'::regclass AND d.deptype <> 'a')
   ORDER BY c.relname`;

export interface SecondaryIndex { readonly name: string; readonly definition: string }

export async function targetEmpty(db: Queryable, job: TableJob): Promise<boolean> {
  const [row] = await db.unsafe<{ empty: boolean }[]>(`SELECT NOT EXISTS (SELECT 1 FROM ${job.targetOnly}${job.qualified}) AS empty`);
  return row?.empty === true;
}

export async function dropSecondaryIndexes(tx: Queryable, job: TableJob): Promise<readonly SecondaryIndex[]> {
  try {
    const indexes = await tx.unsafe<SecondaryIndex[]>(SECONDARY_INDEXES, [job.qualified]);
    for (const index of indexes) await tx.unsafe(`DROP INDEX ${index.name}`);
    return indexes;
  } catch (error) {
    throw copyError(error, 'target', job);
  }
}