/**
 * Applies replicated DDL to a PostgreSQL target, as a barrier inside the
 * apply batch (ApplyWriter.ddlBarrier): what was queued before runs first,
 * then the planned statements, then the table's new snapshot is stored in
 * pgtide.ddl_snapshot, all in the batch's transaction, which also records the
 * applied position; the batch commits right after the source transaction.
 * So a crash leaves the change either applied and recorded or neither.
 *
 * The plan diffs the snapshot stored on the target (the last one applied)
 * against the new one (ddl-plan.ts); the message's own "before" is used only
 * for a table the target has no snapshot of yet.
 */
import type { Logger } from 'pino';
import type { DdlPosition, DdlTarget } from '../../apply/ddl-stage.js';
import { parseTableSnapshot, type DdlEvent, type TableSnapshot } from '../../apply/ddl-event.js';
import { fromServerError, PgtideError } from '../../core/errors.js';
import { formatLsn, ZERO_LSN, type Lsn } from '../../core/lsn.js';
import { qualify } from '../../core/sql.js';
import { tableKey, type TableGateState } from '../../core/table-sync.js';
import type { StoppedDdl } from '../../state/ddl-state.js';
import type { ApplyWriter, DdlQuery } from './apply-writer.js';
import { planObjectReplay } from './ddl-objects.js';
import { markForRecopy, rewriteVolatileError } from './recopy.js';
import { planAlter, planCreate, planDrop, planEnum } from './ddl-plan.js';
import type { DdlStep } from './ddl-step.js';
import type { DeferredIndexBuilder } from './deferred-indexes.js';
import { partitionChange, planPartition, recordPartitionState, withoutOnly } from './ddl-partitions.js';
import { planSchemaDrops, planSchemaRename, type SchemaRename } from './ddl-schemas.js';

export type DestructivePolicy = 'apply' | 'skip' | 'pause';
export type DdlErrorPolicy = 'stop' | 'skip';
export type RewriteVolatilePolicy = 'resync' | 'error';

export interface DdlApplyOptions {
  readonly subscription: string;
  readonly destructive: DestructivePolicy;
  readonly onError: DdlErrorPolicy;
  /** A column added with values the target cannot reproduce (volatile default, identity) on a table with rows. */
  readonly rewriteVolatile?: RewriteVolatilePolicy;
  /** A table was put back to `init` for a re-copy in the open batch (the engine copies it once the target shows that committed). */
  readonly onRecopy?: (table: string, commitLsn: Lsn) => void;
  /** The gate's table map: a rename, create or drop keeps it true for the rows that follow. */
  readonly tables: Map<string, TableGateState>;
  /** Records the DDL a stop waits on, outside the batch (which rolls back). */
  readonly recordStop: (stop: StoppedDdl) => Promise<void>;
  /** Builds indexes the source built CONCURRENTLY, after the batch commits. */
  readonly deferredIndexes?: DeferredIndexBuilder;
  readonly logger: Logger;
}

interface TableChange {
  readonly oid: number;
  /** The table as the target has it now (stored snapshot, else the message's before). */
  readonly before: TableSnapshot | null;
  /** Null: the table was dropped. */
  readonly after: TableSnapshot | null;
  readonly created: boolean;
  /** The source rewrote the table's rows with values the target cannot compute the same (recopy.ts). */
  readonly recopy: boolean;
  /** Where a dropped table without any snapshot was. */
  readonly droppedName?: { readonly schema: string; readonly name: string };
  /** Where its rows are published (ddl-partitions.ts); undefined: not said (older capture). */
  readonly publishedAs?: { readonly schema: string; readonly name: string } | null;
  /** It just became a partition and holds rows. */
  readonly filled?: boolean;
}

export class PostgresDdlTarget implements DdlTarget {
  readonly #writer: ApplyWriter;
  readonly #options: DdlApplyOptions;

  constructor(writer: ApplyWriter, options: DdlApplyOptions) {
    this.#writer = writer;
    this.#options = options;
  }

  apply(event: DdlEvent, at: DdlPosition): Promise<void> {
    return this.#writer.ddlBarrier(async (query) => {
      if (event.event === 'enum') {
        // Committed right after this source transaction (the barrier's batch ends there), so the
        // next transaction may use the value; the source forbids using it in this one.
        const rows = await query(`SELECT e.enumlabel AS label FROM pg_enum e WHERE e.enumtypid = to_regtype($1) ORDER BY e.enumsortorder`, [qualify(event.type.schema, event.type.name)]);
        const steps = planEnum(event.type, rows.map((r) => String(r['label'])));
        if (steps.length > 0) await this.#run(query, event, at, qualify(event.type.schema, event.type.name), steps);
        return;
      }
      if (event.event === 'object') {
        await this.#object(query, event, at);
        return;
      }
      if (event.event === 'schema') {
        await this.#schemaRename(query, event, at, false);
        return;
      }
      for (const change of await this.#changes(query, event)) await this.#applyTable(query, event, at, change, false);
      if (event.event === 'sql_drop' && event.schemas) await this.#dropSchemas(query, event, at, event.schemas);
    });
  }

  /** `pgtide ddl skip`: the change is not applied, but its snapshot is stored, so later changes diff from it. */
  skip(event: DdlEvent, at: DdlPosition): Promise<void> {
    return this.#writer.ddlBarrier(async (query) => {
      if (event.event === 'schema') await this.#schemaRename(query, event, at, true);
      for (const change of await this.#changes(query, event)) await this.#applyTable(query, event, at, change, true);
      await this.#record(query, at, 'skipped', undefined, event.statement, 'skipped with pgtide ddl skip');
    });
  }

  refuse(at: DdlPosition, reason: string, text: string): Promise<void> {
    return this.#writer.ddlBarrier((query) => this.#record(query, at, 'forged', undefined, text, reason));
  }

  /** A view, function, procedure or trigger: its statement text, when that is safe (ddl-objects.ts); else ddl.onError. */
  async #object(query: DdlQuery, event: Extract<DdlEvent, { event: 'object' }>, at: DdlPosition): Promise<void> {
    const what = event.objects.map((o) => o.identity ?? o.type).join(', ');
    const [current] = await query(`SELECT current_setting('search_path') AS path`);
    const replay = planObjectReplay(event.tag, event.statement, event.search_path, String(current?.['path'] ?? 'public'));
    if (replay.ok) {
      await this.#run(query, event, at, what, replay.steps);
      return;
    }
    if (this.#options.onError === 'skip') {
      this.#options.logger.warn({ objects: what, commitLsn: formatLsn(at.commitLsn), ordinal: at.ordinal }, `${replay.reason}; ddl.onError is skip: recorded in pgtide.ddl_unhandled`);
      await this.#record(query, at, 'policy', what, event.statement, `ddl.onError = skip: ${replay.reason}`);
      return;
    }
    await this.#options.recordStop({ commitLsn: at.commitLsn, ordinal: at.ordinal, table: what, statement: event.statement ?? undefined, reason: replay.reason });
    throw new PgtideError('DDL_FAILED', `a replicated schema change cannot be applied on the target: ${replay.reason} (${what}, from the statement ${quoteStatement(event.statement)} in the source transaction committed at LSN ${formatLsn(at.commitLsn)}, DDL #${at.ordinal} of it). Apply it on the target yourself and run \`pgtide ddl skip --config <file>\`, then restart pgtide; or set ddl.onError: skip.`);
  }

  /** ALTER SCHEMA … RENAME TO (ddl-schemas.ts): one statement; the tables' snapshots, table_state and the gate follow. */
  async #schemaRename(query: DdlQuery, event: SchemaRename, at: DdlPosition, skipping: boolean): Promise<void> {
    const steps = skipping ? [] : await planSchemaRename(query, event);
    if (steps.length > 0) await this.#run(query, event, at, `schema ${event.old}`, steps);
    for (const t of event.tables) {
      // Without a stored snapshot the table was still under the old name (for table_state and the gate).
      const before = await this.#stored(query, t.oid) ?? { ...t.after, schema: t.after.schema === event.name ? event.old : t.after.schema };
      await this.#remember(query, at, { oid: t.oid, before, after: t.after, created: false, recopy: false });
    }
  }

  /** DROP SCHEMA: after its tables (#applyTable), the schemas that are empty on the target, under ddl.destructive. */
  async #dropSchemas(query: DdlQuery, event: DdlEvent, at: DdlPosition, schemas: readonly { readonly name: string }[]): Promise<void> {
    const plan = await planSchemaDrops(query, schemas);
    for (const name of plan.kept) this.#options.logger.warn({ schema: name, commitLsn: formatLsn(at.commitLsn) }, `the source dropped schema ${name}; the target keeps it because objects are left in it there`);
    const what = schemas.map((s) => `schema ${s.name}`).join(', ');
    const steps = await this.#policy(query, event, at, what, plan.steps);
    if (steps.length > 0) await this.#run(query, event, at, what, steps);
  }

  async #changes(query: DdlQuery, event: DdlEvent): Promise<TableChange[]> {
    const changes: TableChange[] = [];
    if (event.event === 'enum' || event.event === 'object' || event.event === 'schema') return changes;
    if (event.event === 'sql_drop') {
      for (const d of event.dropped) {
        const stored = await this.#stored(query, d.oid);
        changes.push({ oid: d.oid, before: stored ?? d.before, after: null, created: false, recopy: false, droppedName: { schema: d.schema, name: d.name } });
      }
    } else {
      for (const t of event.tables) {
        const stored = await this.#stored(query, t.oid);
        changes.push({ oid: t.oid, before: stored ?? t.before, after: t.after, created: t.created, recopy: t.recopy === true,
          ...(t.published_as !== undefined ? { publishedAs: t.published_as } : {}), ...(t.filled !== undefined ? { filled: t.filled } : {}) });
      }
    }
    return changes;
  }

  async #applyTable(query: DdlQuery, event: DdlEvent, at: DdlPosition, change: TableChange, skipping: boolean): Promise<void> {
    const { before, after } = change;
    const where = after ?? before ?? change.droppedName!;
    const table = qualify(where.schema, where.name);
    let steps: DdlStep[];
    const partition = partitionChange(event, change);
    if (!after) steps = planDrop(before ?? change.droppedName!);
    else if (partition) steps = await planPartition(query, partition);
    // CREATE INDEX CONCURRENTLY cannot run in a transaction block, so the statement is that alone.
    else if (before) steps = planAlter(before, after, { concurrently: event.tag === 'CREATE INDEX' && /\bCONCURRENTLY\b/i.test(event.statement ?? '') && this.#options.deferredIndexes !== undefined });
    else if (change.created) steps = planCreate(after);
    else {
      // In scope but never seen (installed after the table's last change reached the slot, or
      // renamed into scope): nothing to diff against; from now on its snapshot is known.
      this.#options.logger.warn({ table, commitLsn: formatLsn(at.commitLsn) }, 'a DDL change arrived for a table pgtide has no earlier snapshot of; its new snapshot is recorded and nothing is changed on the target');
      steps = [];
    }
    if (after?.relkind === 'p') steps = steps.map((s) => ({ ...s, sql: withoutOnly(s.sql) }));
    // ddl.rewriteVolatile = error stops before anything of the change runs.
    if (!skipping && change.recopy && after && this.#options.rewriteVolatile === 'error') await this.#refuseRewrite(event, at, table);
    if (!skipping) steps = await this.#policy(query, event, at, table, steps);
    const deferred = steps.filter((s) => s.concurrentIndex !== undefined);
    steps = steps.filter((s) => s.concurrentIndex === undefined);
    if (!skipping && steps.length > 0) await this.#run(query, event, at, table, steps);
    if (!skipping) {
      for (const step of deferred) {
        await query(`INSERT INTO pgtide.ddl_deferred (subscription, table_oid, index_name, qualified_name, statement, commit_lsn) VALUES ($1, $2::text::bigint, $3, $4, $5, $6::text::pg_lsn)`,
          [this.#options.subscription, String(change.oid), step.concurrentIndex!.name, step.concurrentIndex!.qualifiedName, step.sql, formatLsn(at.commitLsn)]);
      }
      if (deferred.length > 0) this.#options.deferredIndexes?.kick(at.commitLsn);
    }
    await this.#remember(query, at, change);
    if (!skipping && change.recopy && after) await this.#recopy(query, at, after);
    if (!skipping && partition) {
      const note = await recordPartitionState(query, this.#options, partition, at.commitLsn);
      if (note) this.#options.logger.warn({ table, commitLsn: formatLsn(at.commitLsn) }, note);
    }
  }

  async #refuseRewrite(event: DdlEvent, at: DdlPosition, table: string): Promise<never> {
    const reason = `ddl.rewriteVolatile = error: the source rewrote ${table} with values the target cannot reproduce`;
    await this.#options.recordStop({ commitLsn: at.commitLsn, ordinal: at.ordinal, table, statement: event.statement ?? undefined, reason });
    throw rewriteVolatileError(table, event.statement, at);
  }

  /** `ddl.rewriteVolatile: resync`: the table is copied again (recopy.ts). */
  async #recopy(query: DdlQuery, at: DdlPosition, table: TableSnapshot): Promise<void> {
    const name = qualify(table.schema, table.name);
    await markForRecopy(query, this.#options.subscription, table.schema, table.name);
    this.#options.tables.set(tableKey(table.schema, table.name), { state: 'init', syncLsn: ZERO_LSN });
    this.#options.logger.warn({ table: name, commitLsn: formatLsn(at.commitLsn) }, `the source filled a new column of ${name} with values the target cannot compute the same (a volatile default or an identity column added to a table with rows); the table is copied again from a new snapshot (ddl.rewriteVolatile: resync)`);
    this.#options.onRecopy?.(name, at.commitLsn);
  }

  /** `ddl.destructive`: drops and narrowing type changes are applied, skipped (and recorded) or paused. */
  async #policy(query: DdlQuery, event: DdlEvent, at: DdlPosition, table: string, steps: DdlStep[]): Promise<DdlStep[]> {
    const destructive = steps.filter((s) => s.destructive);
    if (destructive.length === 0 || this.#options.destructive === 'apply') return steps;
    const what = destructive.map((s) => s.what).join('; ');
    if (this.#options.destructive === 'skip') {
      this.#options.logger.warn({ table, commitLsn: formatLsn(at.commitLsn), skipped: what }, 'ddl.destructive is skip: not applying a destructive change; recorded in pgtide.ddl_unhandled');
      await this.#record(query, at, 'policy', table, event.statement, `ddl.destructive = skip: not applied: ${what}`);
      return steps.filter((s) => !s.destructive);
    }
    const reason = `ddl.destructive = pause: ${what}`;
    await this.#options.recordStop({ commitLsn: at.commitLsn, ordinal: at.ordinal, table, statement: event.statement ?? undefined, reason });
    throw new PgtideError('DDL_PAUSED', `a destructive schema change waits for you: ${what} on ${table}, from the statement ${quoteStatement(event.statement)} in the source transaction committed at LSN ${formatLsn(at.commitLsn)} (DDL #${at.ordinal} of it). Set ddl.destructive: apply and restart to apply it, or run \`pgtide ddl skip --config <file>\` to move past it (it is recorded in pgtide.ddl_unhandled).`);
  }

  async #run(query: DdlQuery, event: DdlEvent, at: DdlPosition, table: string, steps: readonly DdlStep[]): Promise<void> {
    await query('SAVEPOINT pgtide_ddl');
    let failed: DdlStep | undefined;
    try {
      for (const step of steps) {
        failed = step;
        await query(step.sql);
      }
      failed = undefined;
      await query('RELEASE SAVEPOINT pgtide_ddl');
    } catch (error) {
      const mapped = fromServerError(error, 'target');
      const reason = `${failed?.what ?? 'DDL'} failed on the target: ${mapped.message}${failed ? ` (statement: ${failed.sql})` : ''}`;
      if (this.#options.onError === 'skip' && failed) {
        await query('ROLLBACK TO SAVEPOINT pgtide_ddl');
        this.#options.logger.error({ code: 'DDL_FAILED', table, commitLsn: formatLsn(at.commitLsn), ordinal: at.ordinal, sqlState: mapped.sqlState }, `${reason}; ddl.onError is skip: moving on without it (recorded in pgtide.ddl_unhandled)`);
        await this.#record(query, at, 'policy', table, event.statement, `ddl.onError = skip: ${reason}`);
        return;
      }
      if (!failed) throw mapped;
      await this.#options.recordStop({ commitLsn: at.commitLsn, ordinal: at.ordinal, table, statement: event.statement ?? undefined, reason });
      throw new PgtideError('DDL_FAILED', `a replicated schema change failed on the target: ${reason}. It comes from the statement ${quoteStatement(event.statement)} on ${table} in the source transaction committed at LSN ${formatLsn(at.commitLsn)} (DDL #${at.ordinal} of it). Fix the target so that it can apply and restart pgtide, or run \`pgtide ddl skip --config <file>\` to move past it (recorded in pgtide.ddl_unhandled).`, { sqlState: mapped.sqlState, detail: mapped.detail, cause: error });
    }
  }

  /** Stores the new snapshot and keeps table_state and the gate in step with a rename, create or drop. */
  async #remember(query: DdlQuery, at: DdlPosition, change: TableChange): Promise<void> {
    const sub = this.#options.subscription;
    const { before, after } = change;
    if (!after) {
      await query(`DELETE FROM pgtide.ddl_snapshot WHERE subscription = $1 AND table_oid = $2::text::bigint`, [sub, String(change.oid)]);
      const gone = before ?? change.droppedName!;
      await query(`DELETE FROM pgtide.table_state WHERE subscription = $1 AND schema_name = $2 AND table_name = $3`, [sub, gone.schema, gone.name]);
      this.#options.tables.delete(tableKey(gone.schema, gone.name));
      return;
    }
    await query(
      `INSERT INTO pgtide.ddl_snapshot (subscription, table_oid, schema_name, table_name, snapshot, commit_lsn)
       VALUES ($1, $2::text::bigint, $3, $4, $5::text::jsonb, $6::text::pg_lsn)
       ON CONFLICT (subscription, table_oid) DO UPDATE SET schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name,
         snapshot = EXCLUDED.snapshot, commit_lsn = EXCLUDED.commit_lsn, updated_at = now()`,
      [sub, String(change.oid), after.schema, after.name, JSON.stringify(after), formatLsn(at.commitLsn)]);
    if (before && (before.schema !== after.schema || before.name !== after.name)) {
      await query(`UPDATE pgtide.table_state SET schema_name = $4, table_name = $5, updated_at = now() WHERE subscription = $1 AND schema_name = $2 AND table_name = $3`,
        [sub, before.schema, before.name, after.schema, after.name]);
      const state = this.#options.tables.get(tableKey(before.schema, before.name));
      this.#options.tables.delete(tableKey(before.schema, before.name));
      if (state) this.#options.tables.set(tableKey(after.schema, after.name), state);
    }
    // A new partitioned table published through its partitions (no publish_via_partition_root) has no rows of its own.
    if (change.created && !before && change.publishedAs !== null) {
      // Its rows are published from the creating transaction on (the trigger added it to the
      // publication there): every change committed from this transaction on applies.
      const syncLsn = (at.commitLsn - 1n) as Lsn;
      await query(
        `INSERT INTO pgtide.table_state (subscription, schema_name, table_name, state, sync_lsn) VALUES ($1, $2, $3, 'ready', $4::text::pg_lsn)
         ON CONFLICT (subscription, schema_name, table_name) DO UPDATE SET state = 'ready', sync_lsn = EXCLUDED.sync_lsn, updated_at = now()`,
        [sub, after.schema, after.name, formatLsn(syncLsn)]);
      this.#options.tables.set(tableKey(after.schema, after.name), { state: 'ready', syncLsn });
    }
  }

  async #stored(query: DdlQuery, oid: number): Promise<TableSnapshot | null> {
    const [row] = await query(`SELECT snapshot::text AS snapshot FROM pgtide.ddl_snapshot WHERE subscription = $1 AND table_oid = $2::text::bigint`, [this.#options.subscription, String(oid)]);
    const text = row?.['snapshot'];
    return typeof text === 'string' ? parseTableSnapshot(JSON.parse(text)) : null;
  }

  async #record(query: DdlQuery, at: DdlPosition, status: 'forged' | 'skipped' | 'policy', table: string | undefined, statement: string | null | undefined, reason: string): Promise<void> {
    await query(
      `INSERT INTO pgtide.ddl_unhandled (subscription, commit_lsn, ordinal, status, table_name, statement, reason)
       VALUES ($1, $2::text::pg_lsn, $3::text::int, $4, $5, $6, $7)
       ON CONFLICT (subscription, commit_lsn, ordinal) DO UPDATE SET status = EXCLUDED.status, table_name = coalesce(EXCLUDED.table_name, pgtide.ddl_unhandled.table_name),
         statement = coalesce(EXCLUDED.statement, pgtide.ddl_unhandled.statement), reason = EXCLUDED.reason, recorded_at = now()`,
      [this.#options.subscription, formatLsn(at.commitLsn), String(at.ordinal), status, table ?? null, statement ?? null, reason]);
  }
}

function quoteStatement(statement: string | null): string {
  if (!statement) return '(unknown)';
  const flat = statement.replace(/\s+/g, ' ').trim();
  return `"${flat.length > 200 ? `${flat.slice(0, 200)}…` : flat}"`;
}
