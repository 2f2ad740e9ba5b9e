/**
 * Sequences that a replicated table's column defaults use, created on the
 * target before the default that names them (a `serial` column added on the
 * source, `CREATE SEQUENCE` then `SET DEFAULT nextval(…)`, a new table with a
 * `bigserial` key), and tied to their column afterwards (`OWNED BY`), as the
 * source has them. Planned from the snapshots like every other step, so the
 * statement text never matters.
 *
 * Only the definition is replicated here, not the position: sequences are not
 * in the WAL stream, and the target's value is brought forward by the
 * sequence sync (docs/sequences.md).
 */
import { qualify, quoteIdent } from '../../core/sql.js';
import type { SequenceSnapshot, TableSnapshot } from '../../apply/ddl-event.js';
import type { DdlStep } from './ddl-step.js';

const key = (s: SequenceSnapshot): string => `${s.schema}\u0000${s.name}`;

/** CREATE SEQUENCE for those `after` uses and `before` did not (all of them for a new table). */
export function createSequences(before: TableSnapshot | null, after: TableSnapshot): DdlStep[] {
  const known = new Set((before?.sequences ?? []).map(key));
  return (after.sequences ?? []).filter((s) => !known.has(key(s))).map((s) => {
    const name = qualify(s.schema, s.name);
    return {
      sql: `CREATE SEQUENCE IF NOT EXISTS ${name} AS ${s.type} INCREMENT BY ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} START WITH ${s.start} CACHE ${s.cache} ${s.cycle ? 'CYCLE' : 'NO CYCLE'}`,
      destructive: false,
      what: `create sequence ${name}`,
    };
  });
}

/** OWNED BY for a new sequence of a serial column (after the column exists on the target). */
export function ownSequences(before: TableSnapshot | null, after: TableSnapshot): DdlStep[] {
  const known = new Map((before?.sequences ?? []).map((s) => [key(s), s]));
  return (after.sequences ?? []).filter((s) => s.owned_by !== null && known.get(key(s))?.owned_by !== s.owned_by).map((s) => {
    const name = qualify(s.schema, s.name);
    return {
      sql: `ALTER SEQUENCE ${name} OWNED BY ${qualify(after.schema, after.name)}.${quoteIdent(s.owned_by!)}`,
      destructive: false,
      what: `tie sequence ${name} to column ${s.owned_by}`,
    };
  });
}
