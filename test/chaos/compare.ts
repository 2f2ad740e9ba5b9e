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
  // The sequences are brought forward by the continuous sync, every `intervalMs` (1 s in the
  // suite), not with the rows: the marker that ended the run can arrive before the round after
  // the workload's last transaction. So a sequence may trail for a few rounds, and is checked
  // again until it has had SEQUENCE_GRACE_MS (many rounds) to catch up; one still behind then
  // means the sync stopped or lost a value.
  const sequenceRows = await src.unsafe<{ name: string; value: string | null }[]>(`SELECT format('%I.%I', schemaname, sequencename) AS name, last_value::text AS value FROM pg_sequences ORDER BY 1`);
  const deadline = Date.now() + SEQUENCE_GRACE_MS;
  let behind = await sequencesBehindOn(dst, sequenceRows);
  while (behind.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    behind = await sequencesBehindOn(dst, sequenceRows);
  }
  problems.push(...behind);
  return { ok: problems.length === 0, tables: tables.length, rows, losses, duplicates, sequences: sequenceRows.length, sequencesBehind: behind.length, problems };
}

const SEQUENCE_GRACE_MS = 15_000;

async function sequencesBehindOn(dst: postgres.Sql, sequenceRows: readonly { readonly name: string; readonly value: string | null }[]): Promise<string[]> {
  const behind: string[] = [];
  for (const seq of sequenceRows) {
    if (seq.value === null) continue;
    const [t] = await dst.unsafe<{ value: string | null }[]>(`SELECT last_value::text AS value FROM pg_sequences WHERE format('%I.%I', schemaname, sequencename) = $1`, [seq.name]);
    if (!t || t.value === null || BigInt(t.value) < BigInt(seq.value)) behind.push(`sequence ${seq.name}: source ${seq.value}, target ${t?.value ?? '(missing)'}`);
  }
  return behind;
}

function clip(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}
