/**
 * Keeps the target's sequences at or beyond the source's.
 *
 * Built-in logical replication does not carry sequence values, so after a
 * failover the subscriber would hand out keys the old primary already used.
 * Every round reads all source sequences in one statement and applies them to
 * the target in one statement (a plpgsql function in the `pgtide` schema that
 * takes arrays), forward-only: setval() runs only when the target's next value
 * is behind the source's next value plus `ahead` increments — "behind" meaning
 * lower for ascending sequences and higher for descending ones. A target that
 * has gone further is never moved back. Each round records what it saw in
 * `pgtide.sequence_state` in the same statement.
 *
 * Definitions are compared every round (from the same two statements): a
 * sequence missing on the target, or with another data type, increment,
 * MINVALUE, MAXVALUE or CYCLE, is reported; with `fixDefinitions` it is
 * created or altered to match the source first. A problem with one sequence
 * never stops the others: the function catches errors per sequence.
 *
 * Limitation: setval() cannot be made conditional atomically (a sequence
 * cannot be locked against nextval() without ALTER SEQUENCE), so the loop
 * assumes nothing calls nextval() on the target's sequences while it runs —
 * true while the target is a replica. Stop the loop before promoting.
 *
 * Size: the reading side and the plpgsql apply function are one protocol (the
 * function takes the arrays the reader builds); split, each half would be read
 * only with the other open.
 */
import postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import { PgtideError, fromServerError } from '../core/errors.js';
import { migrateStateSchema } from '../state/state-schema.js';
import { BoundedConnector, CLEANUP_MS, settleWithin } from '../pg/bounded.js';
import {
  discoverSequences, readSequenceDefinitions, definitionFromRow, SequenceReader,
  type CatalogSequence, type SequenceDefinition, type SequenceDiscovery, type SequenceReadMode,
} from './sequence-catalog.js';
import { qualify, quoteIdent, type QualifiedName } from '../core/sql.js';

export interface SequenceSyncOptions {
  readonly sourceUrl: string;
  readonly targetUrl: string;
  /** The config `name`; keys the rows in pgtide.sequence_state. */
  readonly subscription: string;
  /** The replicated tables; undefined or 'all' for every user table. */
  readonly tables?: readonly QualifiedName[] | 'all' | undefined;
  /** Sequences used by the application directly (config `sequences.include`). */
  readonly include?: readonly QualifiedName[] | undefined;
  /** Keep the target this many increments beyond the source (config `sequences.ahead`). */
  readonly ahead?: number | undefined;
  /** Create missing target sequences and ALTER mismatched ones to the source's definition. */
  readonly fixDefinitions?: boolean | undefined;
  /** Re-read the source catalog at least this often, to pick up new tables and sequences. Default 60 s. */
  readonly rediscoverEveryMs?: number | undefined;
}

export type SequenceSyncStatus =
  /** setval() moved the target forward. */
  | 'advanced'
  /** The target was already exactly at the wanted position. */
  | 'unchanged'
  /** The target is beyond the source (+ ahead) and was left alone. */
  | 'target_ahead'
  /** The source's value lies outside the target's MINVALUE..MAXVALUE: the target was moved to its limit at most. */
  | 'clamped'
  | 'missing_on_source'
  | 'missing_on_target'
  /** The source user has neither SELECT nor USAGE on the sequence. */
  | 'unreadable'
  /** Catalog read mode and the sequence was not called since its last setval(..., false): its position is unknown. */
  | 'source_unknown'
  /** Not synced because the definitions disagree on the direction (increment sign). */
  | 'skipped'
  | 'error';

const HEALTHY: ReadonlySet<SequenceSyncStatus> = new Set(['advanced', 'unchanged', 'target_ahead']);

export interface SequenceSyncItem extends QualifiedName {
  readonly qualifiedName: string;
  readonly status: SequenceSyncStatus;
  readonly sourceValue: bigint | null;
  readonly sourceIsCalled: boolean | null;
  readonly targetBefore: bigint | null;
  readonly targetBeforeIsCalled: boolean | null;
  readonly targetAfter: bigint | null;
  readonly targetAfterIsCalled: boolean | null;
  readonly detail?: string | undefined;
}

export type SequenceMismatchKind = 'missing_on_target' | 'data_type' | 'increment' | 'min_value' | 'max_value' | 'cycle';

export interface SequenceMismatch extends QualifiedName {
  readonly qualifiedName: string;
  readonly kind: SequenceMismatchKind;
  readonly source: string;
  /** null when the sequence is missing on the target. */
  readonly target: string | null;
  /** True when fixDefinitions aligned it in this round. */
  readonly fixed: boolean;
  /** Why fixing failed, when it was tried. */
  readonly error?: string | undefined;
}

export interface SequenceSyncReport {
  readonly startedAt: Date;
  readonly durationMs: number;
  readonly readMode: SequenceReadMode;
  readonly readNote?: string | undefined;
  readonly items: readonly SequenceSyncItem[];
  /** Mismatches found this round; fixed ones have `fixed: true`. */
  readonly mismatches: readonly SequenceMismatch[];
  /** Configured tables that do not exist on the source (their sequences cannot be found). */
  readonly missingTables: readonly QualifiedName[];
  /** Every sequence synced or correctly left alone, and no unfixed mismatch. */
  readonly ok: boolean;
}

/** Compares the fields that decide which values a sequence hands out (START and CACHE do not). */
export function compareDefinitions(source: SequenceDefinition, target: SequenceDefinition | null): { kind: SequenceMismatchKind; source: string; target: string | null }[] {
  if (!target) return [{ kind: 'missing_on_target', source: describeDefinition(source), target: null }];
  const out: { kind: SequenceMismatchKind; source: string; target: string | null }[] = [];
  if (source.dataType !== target.dataType) out.push({ kind: 'data_type', source: source.dataType, target: target.dataType });
  if (source.increment !== target.increment) out.push({ kind: 'increment', source: String(source.increment), target: String(target.increment) });
  if (source.min !== target.min) out.push({ kind: 'min_value', source: String(source.min), target: String(target.min) });
  if (source.max !== target.max) out.push({ kind: 'max_value', source: String(source.max), target: String(target.max) });
  if (source.cycle !== target.cycle) out.push({ kind: 'cycle', source: String(source.cycle), target: String(target.cycle) });
  return out;
}

export function describeDefinition(d: SequenceDefinition): string {
  return `AS ${d.dataType} INCREMENT BY ${d.increment} MINVALUE ${d.min} MAXVALUE ${d.max} START WITH ${d.start} CACHE ${d.cache} ${d.cycle ? 'CYCLE' : 'NO CYCLE'}`;
}

const DATA_TYPES: ReadonlySet<string> = new Set(['smallint', 'integer', 'bigint']);

/** The DDL that gives `name` the source's definition (CREATE when missing on the target). */
export function definitionDdl(qualifiedName: string, source: SequenceDefinition, create: boolean): string {
  // dataType comes from format_type() on the source; check it before putting it into SQL.
  if (!DATA_TYPES.has(source.dataType)) throw new PgtideError('UNSUPPORTED_OBJECT', `sequence ${qualifiedName} has data type ${source.dataType}; pgtide only knows smallint, integer and bigint.`);
  return create
    ? `CREATE SEQUENCE ${qualifiedName} ${describeDefinition(source)}`
    : `ALTER SEQUENCE ${qualifiedName} AS ${source.dataType} INCREMENT BY ${source.increment} MINVALUE ${source.min} MAXVALUE ${source.max} START WITH ${source.start} ${source.cycle ? 'CYCLE' : 'NO CYCLE'}`;
}

/**
 * Applies source positions to the target, forward-only, one row per input.
 * Versioned name: two pgtide releases sharing a target never replace each
 * other's function with an incompatible one.
 */
const APPLY_FUNCTION = 'pgtide.sequence_sync_apply_v1';
const APPLY_FUNCTION_SQL = `
CREATE OR REPLACE FUNCTION ${APPLY_FUNCTION}(p_schemas text[], p_names text[], p_values bigint[], p_called boolean[], p_ahead bigint)
RETURNS TABLE (ord int, status text, clamped boolean, before_value text, before_called boolean, after_value text, after_called boolean,
               data_type text, start text, increment text, min text, max text, cache text, cycle boolean, detail text)
LANGUAGE plpgsql
AS $fn$
DECLARE
  rel regclass;
  inc bigint; lo bigint; hi bigint;
  cur_v bigint; cur_c boolean;
  want numeric; want_c boolean;
  pos_cur numeric; pos_want numeric;
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_names, 1), 0) LOOP
    ord := i - 1; status := NULL; clamped := false; before_value := NULL; before_called := NULL;
    after_value := NULL; after_called := NULL; data_type := NULL; start := NULL; increment := NULL;
    min := NULL; max := NULL; cache := NULL; cycle := NULL; detail := NULL; rel := NULL;
    -- One subtransaction per sequence: an error (privilege, bounds, a concurrent DROP) is reported for it alone.
    BEGIN
      SELECT c.oid::regclass, format_type(s.seqtypid, NULL), s.seqstart::text, s.seqincrement, s.seqmin, s.seqmax, s.seqcache::text, s.seqcycle
        INTO rel, data_type, start, inc, lo, hi, cache, cycle
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
       WHERE n.nspname = p_schemas[i] AND c.relname = p_names[i] AND c.relkind = 'S';
      IF rel IS NULL THEN
        status := 'missing';
        RETURN NEXT;
        CONTINUE;
      END IF;
      increment := inc::text; min := lo::text; max := hi::text;
      -- regclass output is a properly quoted, schema-qualified name when needed.
      EXECUTE format('SELECT last_value, is_called FROM %s', rel) INTO cur_v, cur_c;
      before_value := cur_v::text; before_called := cur_c;
      after_value := before_value; after_called := cur_c;
      IF p_values[i] IS NULL THEN
        status := 'no_source_value';
      ELSE
        -- The wanted state mirrors the source's (last_value, is_called), shifted by ahead increments.
        want := p_values[i]::numeric + p_ahead::numeric * inc;
        want_c := coalesce(p_called[i], true);
        IF want > hi THEN
          want := hi; want_c := inc > 0; clamped := true;
        ELSIF want < lo THEN
          want := lo; want_c := inc < 0; clamped := true;
        END IF;
        -- Compare the values the next nextval() would return: this folds is_called in.
        pos_cur := CASE WHEN cur_c THEN cur_v::numeric + inc ELSE cur_v END;
        pos_want := CASE WHEN want_c THEN want + inc ELSE want END;
        IF (inc > 0 AND pos_want > pos_cur) OR (inc < 0 AND pos_want < pos_cur) THEN
          PERFORM pg_catalog.setval(rel, want::bigint, want_c);
          after_value := want::text; after_called := want_c;
          status := 'advanced';
        ELSIF pos_want = pos_cur THEN
          status := 'unchanged';
        ELSE
          status := 'target_ahead';
        END IF;
      END IF;
      RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
      status := 'error';
      detail := SQLSTATE || ': ' || SQLERRM;
      RETURN NEXT;
    END;
  END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION ${APPLY_FUNCTION}(text[], text[], bigint[], boolean[], bigint) FROM PUBLIC;
`;

/** Installs the apply function in the target's `pgtide` schema (creating the state schema first). */
export async function installSequenceApplyFunction(sql: postgres.Sql): Promise<void> {
  try {
    await migrateStateSchema(sql);
    await sql.begin(async (tx) => {
      // CREATE OR REPLACE from two processes at once fails with "tuple concurrently updated".
      await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('pgtide.sequence_sync_apply'))`);
      await tx.unsafe(APPLY_FUNCTION_SQL);
    });
  } catch (error) {
    throw fromServerError(error, 'target');
  }
}

interface ApplyRow {
  readonly ord: number;
  readonly status: 'missing' | 'no_source_value' | 'advanced' | 'unchanged' | 'target_ahead' | 'error';
  readonly clamped: boolean;
  readonly before_value: string | null;
  readonly before_called: boolean | null;
  readonly after_value: string | null;
  readonly after_called: boolean | null;
  readonly data_type: string | null;
  readonly start: string | null;
  readonly increment: string | null;
  readonly min: string | null;
  readonly max: string | null;
  readonly cache: string | null;
  readonly cycle: boolean | null;
  readonly detail: string | null;
}

const APPLY_STATEMENT = `
WITH r AS (SELECT * FROM ${APPLY_FUNCTION}($1::text[], $2::text[], $3::bigint[], $4::text[]::boolean[], $5::bigint)),
saved AS (
  INSERT INTO pgtide.sequence_state AS st (subscription, schema_name, sequence_name, source_value, source_is_called, target_value, synced_at)
  SELECT $6::text, ($1::text[])[r.ord + 1], ($2::text[])[r.ord + 1], ($3::bigint[])[r.ord + 1], ($4::text[]::boolean[])[r.ord + 1], r.after_value::bigint, now()
    FROM r WHERE r.status IN ('advanced', 'unchanged', 'target_ahead')
  ON CONFLICT (subscription, schema_name, sequence_name) DO UPDATE
    SET source_value = EXCLUDED.source_value, source_is_called = EXCLUDED.source_is_called,
        target_value = EXCLUDED.target_value, synced_at = EXCLUDED.synced_at
)
SELECT * FROM r ORDER BY ord`;

function bigintOrNull(text: string | null): bigint | null {
  return text === null ? null : BigInt(text);
}

function sign(value: bigint): number {
  return value > 0n ? 1 : value < 0n ? -1 : 0;
}

/** A source sequence the loop syncs, plus what we last learnt about it on the target. */
interface Tracked {
  readonly seq: CatalogSequence;
  target: SequenceDefinition | null;
}

interface TargetApplyInput {
  readonly schemas: string[];
  readonly names: string[];
  readonly values: (string | null)[];
  /** 'true'/'false', sent as text[]: postgres.js types a JS boolean array parameter as plain boolean, and serialises only `true` itself as true. */
  readonly called: (string | null)[];
}

export class SequenceSync {
  readonly #options: SequenceSyncOptions;
  readonly #source: postgres.Sql;
  readonly #connectors = [new BoundedConnector(), new BoundedConnector()] as const;
  readonly #target: postgres.Sql;
  #discovery: SequenceDiscovery | undefined;
  #tracked: Tracked[] = [];
  #reader: SequenceReader | undefined;
  #discoveredAt = 0;
  #rediscover = false;
  #installed = false;
  /** The target's current_user, for the GRANT named when a sequence may not be set. */
  #targetUser: string | undefined;
  /** Rounds and discoveries run one at a time (the loop and a shutdown/cutover call may overlap). */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: SequenceSyncOptions) {
    if (options.ahead !== undefined && (!Number.isInteger(options.ahead) || options.ahead < 0)) {
      throw new PgtideError('CONFIG_INVALID', `sequences.ahead must be a whole number >= 0, got ${options.ahead}.`);
    }
    this.#options = options;
    const connection = { application_name: 'pgtide sequences' };
    // Bounded sockets: a server down behind a proxy made these pools reconnect ~700 times a second.
    this.#source = openPostgres(options.sourceUrl, 'catalog', { ...this.#connectors[0].options, max: 1, onnotice: () => {}, connection });
    this.#target = openPostgres(options.targetUrl, 'catalog', { ...this.#connectors[1].options, max: 1, onnotice: () => {}, connection });
  }

  /** The sequences found by the last discovery. */
  get sequences(): readonly CatalogSequence[] {
    return this.#tracked.map((t) => t.seq);
  }

  #serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Reads the source catalog and the target definitions; installs the target function the first time. */
  discover(): Promise<SequenceDiscovery> {
    return this.#serialized(() => this.#discover());
  }

  /** One round: read the source, fix definitions when asked, apply forward-only, record. */
  syncOnce(): Promise<SequenceSyncReport> {
    return this.#serialized(() => this.#syncOnce());
  }

  async #discover(): Promise<SequenceDiscovery> {
    if (!this.#installed) {
      await installSequenceApplyFunction(this.#target);
      const [me] = await this.#target.unsafe<{ user: string }[]>(`SELECT current_user AS "user"`).catch((e: unknown) => { throw fromServerError(e, 'target'); });
      this.#targetUser = me?.user;
      this.#installed = true;
    }
    const tables = this.#options.tables === undefined ? 'all' : this.#options.tables;
    const discovery = await discoverSequences(this.#source, { tables, include: this.#options.include ?? [] }, 'source');
    const targets = await readSequenceDefinitions(this.#target, discovery.sequences, 'target');
    this.#discovery = discovery;
    this.#tracked = discovery.sequences.map((seq, i) => ({ seq, target: targets[i] ?? null }));
    this.#reader = new SequenceReader(this.#source, discovery.sequences, 'source');
    this.#discoveredAt = Date.now();
    this.#rediscover = false;
    return discovery;
  }

  async #syncOnce(): Promise<SequenceSyncReport> {
    const startedAt = new Date();
    const every = this.#options.rediscoverEveryMs ?? 60_000;
    if (!this.#discovery || this.#rediscover || Date.now() - this.#discoveredAt >= every) await this.#discover();
    const discovery = this.#discovery!;
    const reader = this.#reader!;
    const read = await reader.read();

    // Fix definitions against what the target looked like last time; the fresh state comes back from the apply below.
    const fixOutcome = new Map<string, string | undefined>();
    const fixedMismatches: SequenceMismatch[] = [];
    if (this.#options.fixDefinitions) {
      for (const [i, tracked] of this.#tracked.entries()) {
        const source = read.readings[i]?.definition;
        if (!source) continue;
        const problems = compareDefinitions(source, tracked.target);
        if (problems.length === 0) continue;
        const error = await this.#fixDefinition(tracked, source);
        for (const problem of problems) {
          fixOutcome.set(`${tracked.seq.qualifiedName} ${problem.kind}`, error);
          if (error === undefined) fixedMismatches.push({ schema: tracked.seq.schema, name: tracked.seq.name, qualifiedName: tracked.seq.qualifiedName, ...problem, fixed: true });
        }
      }
    }

    const input: TargetApplyInput = { schemas: [], names: [], values: [], called: [] };
    const skipped = new Map<number, string>();
    for (const [i, tracked] of this.#tracked.entries()) {
      const reading = read.readings[i];
      input.schemas.push(tracked.seq.schema);
      input.names.push(tracked.seq.name);
      let value: string | null = reading?.present && reading.readable && reading.lastValue !== null ? String(reading.lastValue) : null;
      const source = reading?.definition;
      if (value !== null && source && tracked.target && sign(source.increment) !== sign(tracked.target.increment)) {
        skipped.set(i, `the source counts ${source.increment > 0n ? 'up' : 'down'} (INCREMENT BY ${source.increment}) but the target ${tracked.target.increment > 0n ? 'up' : 'down'} (INCREMENT BY ${tracked.target.increment}); align the definitions (--fix-definitions) to sync it`);
        value = null;
      }
      input.values.push(value);
      input.called.push(value === null ? null : String(reading?.isCalled ?? true));
    }

    let rows: ApplyRow[] = [];
    if (this.#tracked.length > 0) {
      try {
        rows = [...await this.#target.unsafe<ApplyRow[]>(APPLY_STATEMENT, [input.schemas, input.names, input.values, input.called, String(this.#options.ahead ?? 0), this.#options.subscription])];
      } catch (error) {
        throw fromServerError(error, 'target');
      }
    }

    const items: SequenceSyncItem[] = [];
    const mismatches: SequenceMismatch[] = [...fixedMismatches];
    const rowByOrd = new Map(rows.map((r) => [r.ord, r]));
    for (const [i, tracked] of this.#tracked.entries()) {
      const { seq } = tracked;
      const reading = read.readings[i];
      const row = rowByOrd.get(i);
      const targetDefinition = row && row.status !== 'missing' && row.status !== 'error' && row.data_type !== null
        ? definitionFromRow({ data_type: row.data_type, start: row.start!, increment: row.increment!, min: row.min!, max: row.max!, cache: row.cache!, cycle: row.cycle! })
        : row?.status === 'missing' ? null : tracked.target;
      tracked.target = targetDefinition;
      if (reading?.definition) {
        for (const problem of compareDefinitions(reading.definition, targetDefinition)) {
          const key = `${seq.qualifiedName} ${problem.kind}`;
          mismatches.push({ schema: seq.schema, name: seq.name, qualifiedName: seq.qualifiedName, ...problem, fixed: false, error: fixOutcome.get(key) });
        }
      }
      let status: SequenceSyncStatus;
      let detail: string | undefined;
      if (!reading?.present) {
        status = 'missing_on_source';
        detail = 'dropped on the source since discovery; it is rediscovered next round';
        this.#rediscover = true;
      } else if (!reading.readable) {
        status = 'unreadable';
        detail = `the source user has neither SELECT nor USAGE on it; GRANT SELECT ON SEQUENCE ${seq.qualifiedName} TO that user`;
      } else if (!row) {
        status = 'error';
        detail = 'the target returned no result for it';
      } else if (row.status === 'missing') {
        status = 'missing_on_target';
        detail = 'create it on the target, or run with --fix-definitions';
      } else if (row.status === 'error') {
        status = 'error';
        detail = row.detail?.startsWith('42501:')
          ? `the target user may not read or set it (${row.detail}); GRANT SELECT, UPDATE ON SEQUENCE ${seq.qualifiedName} TO ${quoteIdent(this.#targetUser ?? 'that user')}`
          : row.detail ?? undefined;
      } else if (skipped.has(i)) {
        status = 'skipped';
        detail = skipped.get(i);
      } else if (row.status === 'no_source_value') {
        status = 'source_unknown';
        detail = 'read through pg_sequence_last_value(), which shows nothing until the sequence is called after a setval(…, false); GRANT SELECT on it to the source user';
      } else if (row.clamped) {
        status = 'clamped';
        detail = `the source value (+ ahead) is outside the target's MINVALUE..MAXVALUE; the target was ${row.status === 'advanced' ? 'moved to its limit' : 'left as it was'}`;
      } else {
        status = row.status;
      }
      items.push({
        schema: seq.schema,
        name: seq.name,
        qualifiedName: seq.qualifiedName,
        status,
        sourceValue: reading?.lastValue ?? null,
        sourceIsCalled: reading?.isCalled ?? null,
        targetBefore: bigintOrNull(row?.before_value ?? null),
        targetBeforeIsCalled: row?.before_called ?? null,
        targetAfter: bigintOrNull(row?.after_value ?? null),
        targetAfterIsCalled: row?.after_called ?? null,
        detail,
      });
    }
    for (const missing of discovery.missingIncludes) {
      items.push({
        schema: missing.schema, name: missing.name, qualifiedName: qualify(missing.schema, missing.name), status: 'missing_on_source',
        sourceValue: null, sourceIsCalled: null, targetBefore: null, targetBeforeIsCalled: null, targetAfter: null, targetAfterIsCalled: null,
        detail: 'named in sequences.include but not a sequence on the source',
      });
    }
    if (reader.stale) this.#rediscover = true;
    const ok = items.every((item) => HEALTHY.has(item.status)) && mismatches.every((m) => m.fixed);
    return {
      startedAt,
      durationMs: Date.now() - startedAt.getTime(),
      readMode: read.mode,
      readNote: read.note,
      items,
      mismatches,
      missingTables: discovery.missingTables,
      ok,
    };
  }

  /** Returns undefined when fixed, else the reason. Each statement on its own, so one failure does not undo the others. */
  async #fixDefinition(tracked: Tracked, source: SequenceDefinition): Promise<string | undefined> {
    try {
      await this.#target.unsafe(definitionDdl(tracked.seq.qualifiedName, source, tracked.target === null));
      tracked.target = source;
      return undefined;
    } catch (error) {
      const state = (error as { code?: unknown }).code;
      return `${typeof state === 'string' ? `${state}: ` : ''}${(error as Error).message}`;
    }
  }

  /** Waits for a round in progress, then closes both connections. */
  async close(): Promise<void> {
    await settleWithin(this.#queue, CLEANUP_MS);
    await settleWithin(Promise.all([this.#source.end({ timeout: 2 }), this.#target.end({ timeout: 2 })]), CLEANUP_MS);
    for (const connector of this.#connectors) connector.destroyAll();
  }
}

/** One line per round for the log: counts by status, then every problem. */
export function summarizeSequenceReport(report: SequenceSyncReport): string {
  const counts = new Map<string, number>();
  for (const item of report.items) counts.set(item.status, (counts.get(item.status) ?? 0) + 1);
  const parts = [...counts].map(([status, n]) => `${n} ${status.replace(/_/g, ' ')}`);
  return [`sequences: ${parts.join(', ') || 'none in scope'} in ${report.durationMs} ms (${report.readMode} read)`, ...sequenceProblems(report)].join('; ');
}

/** The problems of a round only (no counts, no timing): equal from round to round while nothing changes. */
export function sequenceProblems(report: SequenceSyncReport): string[] {
  const problems = report.items.filter((i) => !HEALTHY.has(i.status)).map((i) => `${i.qualifiedName}: ${i.status}${i.detail ? ` (${i.detail})` : ''}`);
  const mismatches = report.mismatches.map((m) => `${m.qualifiedName}: ${m.kind.replace(/_/g, ' ')} source ${m.source} target ${m.target ?? '(none)'}${m.fixed ? ' — fixed' : m.error ? ` — fix failed: ${m.error}` : ''}`);
  return [...problems, ...mismatches];
}
