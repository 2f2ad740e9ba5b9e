/**
 * Objects other than tables (views, functions, procedures, triggers) have no
 * catalog snapshot pgtide diffs: their change is replayed as the statement
 * text the source ran, under the source session's search_path. That is only
 * safe when the captured query string is exactly that one statement: a string
 * with several statements would run the others again (rows twice, table
 * changes already applied from their snapshots), and a DO block or a function
 * that ran the DDL would run whole. Anything else is not replayed: it goes to
 * pgtide.ddl_unhandled under `ddl.onError` (stop, naming it; or skip). So
 * does a SECURITY DEFINER routine: replayed, it would be owned by pgtide's
 * target role.
 */
import type { DdlStep } from './ddl-step.js';

export type ObjectReplay =
  | { readonly ok: true; readonly steps: readonly DdlStep[] }
  | { readonly ok: false; readonly reason: string };

const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/** The statement text to replay, or why not. `previousPath`: the target session's search_path, restored afterwards. */
export function planObjectReplay(tag: string, statement: string | null, searchPath: string | null, previousPath: string): ObjectReplay {
  if (!statement) return { ok: false, reason: `${tag}: the source sent no statement text` };
  const statements = splitStatements(statement);
  if (statements.length !== 1) return { ok: false, reason: `${tag} is not replayed: the query string holds ${statements.length} statements, and replaying it would run the others again` };
  const only = statements[0]!;
  if (!startsWithTag(only, tag)) return { ok: false, reason: `${tag} is not replayed: the query string is not that statement (it ran inside a DO block, a function or another command)` };
  // Replayed objects are owned by pgtide's target role, and PUBLIC may execute a new function:
  // a SECURITY DEFINER routine would let whoever created it on the source run code on the target
  // with pgtide's privileges.
  if (/\bSECURITY\s+DEFINER\b/i.test(only)) return { ok: false, reason: `${tag} is not replayed: it makes a SECURITY DEFINER routine, which on the target would run with the privileges of pgtide's role` };
  const what = `${tag.toLowerCase()} (statement text)`;
  return {
    ok: true,
    steps: [
      ...(searchPath !== null ? [{ sql: `SELECT pg_catalog.set_config('search_path', ${literal(searchPath)}, true)`, destructive: false, what: 'set the source\'s search_path' }] : []),
      { sql: only, destructive: false, what },
      { sql: `SELECT pg_catalog.set_config('search_path', ${literal(previousPath)}, true)`, destructive: false, what: 'restore the search_path' },
    ],
  };
}

/** True when the statement is the command the tag names (CREATE [OR REPLACE] … VIEW for CREATE VIEW). */
function startsWithTag(statement: string, tag: string): boolean {
  const words = tag.toUpperCase().split(/\s+/);
  const head = statement.toUpperCase().split(/\s+/).slice(0, 8);
  if (head[0] !== words[0]) return false;
  return words.slice(1).every((w) => head.includes(w));
}

/**
 * Splits SQL text at top-level semicolons, skipping quoted strings, quoted
 * identifiers, dollar-quoted bodies and comments; drops empty statements and
 * leading comments. Enough to count statements, not to parse them.
 */
export function splitStatements(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const push = (end: number): void => {
    const piece = stripComments(text.slice(start, end)).trim();
    if (piece.length > 0) out.push(piece);
  };
  while (i < text.length) {
    const c = text[i]!;
    const next = text[i + 1];
    if (c === '-' && next === '-') {
      const eol = text.indexOf('\n', i);
      i = eol < 0 ? text.length : eol + 1;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < text.length && depth > 0) {
        if (text[i] === '/' && text[i + 1] === '*') { depth++; i += 2; } else if (text[i] === '*' && text[i + 1] === '/') { depth--; i += 2; } else i++;
      }
    } else if (c === "'" || c === '"') {
      i++;
      while (i < text.length) {
        if (text[i] === c && text[i + 1] === c) i += 2;
        else if (text[i] === c) { i++; break; } else i++;
      }
    } else if (c === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i));
      if (tag) {
        const close = text.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? text.length : close + tag[0].length;
      } else i++;
    } else if (c === ';') {
      push(i);
      i++;
      start = i;
    } else i++;
  }
  push(text.length);
  return out;
}

/** Leading comments and whitespace only (the rest of the statement is kept as written). */
function stripComments(piece: string): string {
  let s = piece;
  for (;;) {
    const t = s.trimStart();
    if (t.startsWith('--')) { const eol = t.indexOf('\n'); s = eol < 0 ? '' : t.slice(eol + 1); continue; }
    if (t.startsWith('/*')) { const end = t.indexOf('*/'); s = end < 0 ? '' : t.slice(end + 2); continue; }
    return t;
  }
}
