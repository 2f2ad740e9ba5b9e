/**
 * `pgtide check --keys`: for tables that several edges write into one target
 * database (consolidation, docs/topologies.md), the keys that two sources both
 * hold. Such a key collides on the target: the second source's insert meets
 * the first one's row (a COPY_CONFLICT in the initial copy, a duplicate key in
 * the stream), and its updates and deletes change the other source's row.
 *
 * Keys are judged by the target's key (its primary key, else its replica
 * identity index), since that is what collides. A source-tag column
 * (`sourceTag`) in that key keeps edges with different tag values apart: they
 * cannot collide, and only edges with the same value (or without the column
 * in the key) are compared, on the key's other columns, which the sources
 * hold under the same names.
 *
 * The keys are read from the sources in their text form (under the text-format
 * settings every pgtide session uses, so equal values print alike on any
 * major) and compared in memory: memory grows with the keys of the checked
 * tables. Publication row filters are not applied: a key a filter keeps off
 * the target is still reported.
 */
import type postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import { TEXT_FORMAT_SETTINGS } from '../pg/text-format.js';
import { PgtideError, fromServerError } from '../core/errors.js';
import { qualify, quoteIdent, type QualifiedName } from '../core/sql.js';
import { CLEANUP_MS, settleWithin } from '../pg/bounded.js';
import { schemaScope } from './schema-job.js';
import type { PgtideConfig } from './config.js';
import { postgresTargetUrl } from './target-config.js';

export interface KeyspaceEdge {
  /** For messages: the config's name and file. */
  readonly label: string;
  readonly config: PgtideConfig;
  /** Identity of the target database (two URLs that name one database share it). */
  readonly targetId: string;
  readonly targetLabel: string;
}

export interface KeyOverlap {
  readonly target: string;
  readonly table: string;
  /** The target key columns compared (the tag column left out). */
  readonly columns: readonly string[];
  readonly edges: readonly [string, string];
  readonly count: number;
  /** Up to `sampleSize` keys, in their text form: `(1)`, `(7,eu)`. */
  readonly sample: readonly string[];
}

export interface KeyspaceReport {
  readonly overlaps: readonly KeyOverlap[];
  /** Tables checked, and what could not be checked and why. */
  readonly lines: readonly string[];
}

const SAMPLE_SIZE = 5;
const CURSOR_ROWS = 10_000;

/** The target's key columns, in key order: its primary key, else its replica identity index. */
async function targetKey(target: postgres.Sql, table: QualifiedName): Promise<readonly string[] | undefined> {
  const rows = await target.unsafe<{ attname: string }[]>(
    `SELECT a.attname
       FROM (SELECT i.indrelid, i.indkey FROM pg_index i
              WHERE i.indrelid = to_regclass($1) AND (i.indisprimary OR i.indisreplident)
              ORDER BY i.indisprimary DESC LIMIT 1) k
       CROSS JOIN LATERAL unnest(k.indkey::int2[]) WITH ORDINALITY AS u(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = k.indrelid AND a.attnum = u.attnum
      ORDER BY u.ord`, [qualify(table.schema, table.name)]);
  return rows.length > 0 ? rows.map((r) => r.attname) : undefined;
}

async function targetExists(target: postgres.Sql, table: QualifiedName): Promise<boolean> {
  const [row] = await target.unsafe<{ found: boolean }[]>(`SELECT to_regclass($1) IS NOT NULL AS found`, [qualify(table.schema, table.name)]);
  return row?.found === true;
}

/**
 * Reads every key of `table` from each edge's source and records, per pair of
 * edges, how many keys both hold and a few of them.
 */
async function compareKeys(sources: readonly postgres.Sql[], indexes: readonly number[], table: QualifiedName, columns: readonly string[]): Promise<Map<string, { count: number; sample: string[] }>> {
  /** Each key's first holder (an edge index). */
  const seen = new Map<string, number>();
  const pairs = new Map<string, { count: number; sample: string[] }>();
  const keyText = `ROW(${columns.map(quoteIdent).join(', ')})::text`;
  for (const index of indexes) {
    const sql = sources[index]!;
    try {
      const cursor = sql.unsafe<{ k: string }[]>(`SELECT ${keyText} AS k FROM ${qualify(table.schema, table.name)}`).cursor(CURSOR_ROWS);
      for await (const rows of cursor) {
        for (const { k } of rows) {
          const first = seen.get(k);
          if (first === undefined) { seen.set(k, index); continue; }
          if (first === index) continue;
          const pair = `${first},${index}`;
          const found = pairs.get(pair) ?? { count: 0, sample: [] };
          found.count++;
          if (found.sample.length < SAMPLE_SIZE) found.sample.push(k);
          pairs.set(pair, found);
        }
      }
    } catch (error) {
      throw fromServerError(error, 'source');
    }
  }
  return pairs;
}

export async function checkKeySpaces(edges: readonly KeyspaceEdge[]): Promise<KeyspaceReport> {
  const byTarget = new Map<string, number[]>();
  edges.forEach((edge, index) => byTarget.set(edge.targetId, [...(byTarget.get(edge.targetId) ?? []), index]));
  const overlaps: KeyOverlap[] = [];
  const lines: string[] = [];
  const site = { max: 1, connect_timeout: 15, onnotice: () => {}, connection: { ...TEXT_FORMAT_SETTINGS } } as const;
  for (const indexes of byTarget.values()) {
    if (indexes.length < 2) continue;
    const targetLabel = edges[indexes[0]!]!.targetLabel;
    const sources: postgres.Sql[] = [];
    const target = openPostgres(postgresTargetUrl(edges[indexes[0]!]!.config, 'pgtide check --keys'), 'catalog', site);
    try {
      const tablesOf = new Map<string, { readonly table: QualifiedName; readonly writers: number[] }>();
      for (const index of indexes) {
        const source = openPostgres(edges[index]!.config.source.url, 'catalog', site);
        sources[index] = source;
        for (const table of await schemaScope(source, edges[index]!.config)) {
          const key = `${table.schema}.${table.name}`;
          const entry = tablesOf.get(key) ?? { table, writers: [] };
          entry.writers.push(index);
          tablesOf.set(key, entry);
        }
      }
      for (const [name, { table, writers }] of tablesOf) {
        if (writers.length < 2) continue;
        if (!(await targetExists(target, table))) {
          lines.push(`${targetLabel} ${name}: not on the target; not checked`);
          continue;
        }
        const key = await targetKey(target, table);
        if (!key) {
          lines.push(`${targetLabel} ${name}: no primary key or replica identity index on the target, so no key can collide there; not checked`);
          continue;
        }
        // Edges whose tag column is in the target key and carries different values never collide.
        const groups = new Map<string, number[]>();
        for (const index of writers) {
          const tag = edges[index]!.config.sourceTag;
          const group = tag && key.includes(tag.column) ? `${tag.column}=${tag.value}` : '';
          groups.set(group, [...(groups.get(group) ?? []), index]);
        }
        for (const [group, members] of groups) {
          const tagColumn = group === '' ? undefined : group.slice(0, group.indexOf('='));
          const columns = key.filter((c) => c !== tagColumn);
          const names = members.map((i) => edges[i]!.label).join(', ');
          if (members.length < 2) continue;
          if (columns.length === 0) {
            lines.push(`${targetLabel} ${name}: ${names} share the tag ${group}, which is the whole key: every row collides`);
          }
          const pairs = await compareKeys(sources, members, table, columns);
          for (const [pair, found] of pairs) {
            const [x, y] = pair.split(',').map(Number) as [number, number];
            overlaps.push({ target: targetLabel, table: name, columns, edges: [edges[x]!.label, edges[y]!.label], count: found.count, sample: found.sample });
          }
          lines.push(`${targetLabel} ${name}: key (${columns.join(', ')})${tagColumn ? ` with ${group}` : ''} compared across ${names}: ${pairs.size === 0 ? 'disjoint' : 'OVERLAP'}`);
        }
        if (groups.size > 1) lines.push(`${targetLabel} ${name}: edges with different values of the tag column in the key cannot collide`);
      }
    } finally {
      await Promise.allSettled([target, ...sources.filter(Boolean)].map((sql) => settleWithin(sql.end({ timeout: 2 }), CLEANUP_MS)));
    }
  }
  return { overlaps, lines };
}

/** The error `pgtide check --keys` stops with when two sources hold one key. */
export function keyspaceError(overlaps: readonly KeyOverlap[]): PgtideError {
  const items = overlaps.map((o) => `  - ${o.target} ${o.table}: ${o.count} key(s) (${o.columns.join(', ')}) held by both ${o.edges[0]} and ${o.edges[1]}, e.g. ${o.sample.join(' ')}`);
  return new PgtideError('KEYSPACE_OVERLAP', `sources that write into one target table hold the same keys, so their rows would collide on the target:\n${items.join('\n')}\nGive each source its own key range (\`pgtide sequences partition\` or \`pgtide sequences install\`, docs/sequences.md), or add a source-tag column to the target's primary key and set \`sourceTag\` on each edge (docs/topologies.md).`);
}
