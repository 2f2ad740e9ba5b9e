/**
 * The end-of-run check of the chaos suite: every table row for row (count
 * and an md5 over the rows in key order; keyless tables as multisets, in the
 * order of their text form), and every sequence (the target's value must not
 * be behind the source's, or the first insert after a failover collides).
 * On a difference, the rows only on the source are losses and the rows only
 * on the target are duplicates (or stale versions).
 */
import type postgres from 'postgres';
import { fingerprint, multisetDiff, rowTexts } from '../support/replication.js';

export interface Comparison {
  readonly ok: boolean;
  readonly tables: number;
  readonly rows: number;
  readonly losses: number;
  readonly duplicates: number;
  readonly sequences: number;
  readonly sequencesBehind: number;
  readonly problems: readonly string[];
}

export async function compareAll(src: postgres.Sql, dst: postgres.Sql, tables: readonly { readonly name: string; readonly orderBy: string | undefined }[]): Promise<Comparison> {
  let rows = 0;
  let losses = 0;
  let duplicates = 0;
  const problems: string[] = [];
  for (const table of tables) {
    const options = table.orderBy ? { orderBy: table.orderBy } : {};
    const [a, b] = await Promise.all([fingerprint(src, table.name, options), fingerprint(dst, table.name, options)]);
    rows += a.count;
    if (a.count === b.count && a.md5 === b.md5) continue;
    const [left, right] = await Promise.all([rowTexts(src, table.name), rowTexts(dst, table.name)]);
    const { missing, extra } = multisetDiff(left, right);
    losses += missing.length;
    duplicates += extra.length;
    problems.push(`${table.name}: source ${a.count} rows, target ${b.count}; ${missing.length} only on the source (e.g. ${missing.slice(0, 3).map(clip).join(' | ') || '-'}), ${extra.length} only on the target (e.g. ${extra.slice(0, 3).map(clip).join(' | ') || '-'})`);
  }
  const sequenceRows = await src.unsafe<{ name: string; value: string | null }[]>(`SELECT format('%I.%I', schemaname, sequencename) AS name, last_value::text AS value FROM pg_sequences ORDER BY 1`);
  let sequencesBehind = 0;
  for (const seq of sequenceRows) {
    if (seq.value === null) continue;
    const [t] = await dst.unsafe<{ value: string | null }[]>(`SELECT last_value::text AS value FROM pg_sequences WHERE format('%I.%I', schemaname, sequencename) = $1`, [seq.name]);
    if (!t || t.value === null || BigInt(t.value) < BigInt(seq.value)) {
      sequencesBehind++;
      problems.push(`sequence ${seq.name}: source ${seq.value}, target ${t?.value ?? '(missing)'}`);
    }
  }
  return { ok: problems.length === 0, tables: tables.length, rows, losses, duplicates, sequences: sequenceRows.length, sequencesBehind, problems };
}

function clip(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}
