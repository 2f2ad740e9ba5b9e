/**
 * End-of-scenario check that the target holds exactly the source's rows. A
 * replicator that is fast but wrong must fail the benchmark, not win it.
 */
import type postgres from 'postgres';
import { qualified, type Table } from './db.js';

export interface TableDigest {
  readonly table: string;
  readonly rows: string;
  /** Order-independent sum of hashtext(row::text); both sides use the same types, so equal rows give equal text. */
  readonly checksum: string;
}

export class MismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MismatchError';
  }
}

async function digest(sql: postgres.Sql, t: Table): Promise<TableDigest> {
  const [row] = await sql.unsafe<{ rows: string; checksum: string }[]>(
    `SELECT count(*)::text AS rows, coalesce(sum(hashtext(t::text)::bigint), 0)::text AS checksum FROM ${qualified(t)} AS t`,
  );
  return { table: qualified(t), rows: row!.rows, checksum: row!.checksum };
}

/** Throws MismatchError naming every table that differs; returns a one-line summary otherwise. */
export async function verifyTables(source: postgres.Sql, target: postgres.Sql, tables: readonly Table[], label: string): Promise<string> {
  const problems: string[] = [];
  let rows = 0;
  for (const t of tables) {
    const [a, b] = await Promise.all([digest(source, t), digest(target, t)]);
    rows += Number(a.rows);
    if (a.rows !== b.rows || a.checksum !== b.checksum) {
      problems.push(`${a.table}: source ${a.rows} rows / checksum ${a.checksum}, target ${b.rows} rows / checksum ${b.checksum}`);
    }
  }
  if (problems.length > 0) {
    throw new MismatchError(`${label}: target does not match source:\n  ${problems.join('\n  ')}`);
  }
  return `${label}: ${tables.length} tables, ${rows} rows match (count + checksum)`;
}
