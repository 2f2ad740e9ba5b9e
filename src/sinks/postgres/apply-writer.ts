/**
 * Applies assembled source transactions to the target, many source
 * transactions per target transaction.
 *
 * Crash safety: every target transaction ends by upserting
 * pgtide.apply_progress and calling pg_replication_origin_xact_setup with the
 * end LSN of its last source transaction, so the applied position commits
 * atomically with the data. A target transaction only ever ends at a source
 * transaction boundary.
 *
 * The apply_progress row, not the origin, is the position of record. Since
 * PostgreSQL 16, an *aborted* transaction also advances the session's origin
 * to the LSN given to xact_setup (RecordTransactionAbort; added for parallel
 * apply of streamed transactions). A pgtide killed after the server ran
 * xact_setup but before COMMIT arrived would leave the origin past data that
 * was rolled back. So (1) xact_setup and COMMIT travel in one simple-protocol
 * Query message, which the server reads whole before running either, and
 * (2) the durable position and the guard between pipelined batches read the
 * transactional apply_progress row; at open, an origin found ahead of it is
 * moved back (see docs/investigations/kill9-loss.md).
 *
 * Batching: within one target transaction, changes are queued per table and
 * each table's consecutive changes of one kind become one set-based statement.
 * Reordering *across* tables inside a batch is safe because apply runs with
 * session_replication_role = replica (no FK checks or ordinary triggers fire)
 * and the batch commits atomically; order *within* a table is kept exactly,
 * and TRUNCATE or a changed table definition is a barrier. ENABLE ALWAYS /
 * ENABLE REPLICA triggers do fire, so their tables are never reordered or
 * folded (replica-triggers.ts). The runs are planned in run-planner.ts and
 * their statements chosen in run-statements.ts; this class decides when a
 * queue is sent (barriers, drains, flush) and sends it.
 *
 * Size: one class because batching, the origin and the pipelined commits share
 * one connection's state (the fence, the COPY gate, the applied-position guard,
 * the failure bookkeeping each statement is tracked by); the origin (open,
 * reconcile, hand-over) is the next piece that could move out.
 */
import postgres from 'postgres';
import { openPostgres } from '../../pg/connect.js';
import type { Logger } from 'pino';
import type { CommitInfo, RowChange, TransactionInfo } from '../../changes/change.js';
import type { Relation } from '../../changes/relation-cache.js';
import { formatLsn, parseLsn, ZERO_LSN, type Lsn } from '../../core/lsn.js';
import { pgTimestampToDate, type PgTimestamp } from '../../protocol/messages.js';
import { TableCatalog, type TargetTable } from './table-catalog.js';
import { fromServerError, PgtideError } from '../../core/errors.js';
import { truncateStatement, type CopyStatement, type Statement } from './statements.js';
import { hasReplicaTriggers, noteReplicaTriggers } from './replica-triggers.js';
import { TEXT_FORMAT_SETTINGS } from '../../pg/text-format.js';
import { copyIn } from '../../pg/copy-in.js';
import { applyError, extendSpan, FirstFailure, type BatchMark, type SourceSpan, type StatementContext } from './apply-failure.js';
import { quoteIdent } from '../../core/sql.js';
import { deferred } from '../../core/async.js';
import type { Sink } from '../sink.js';
import { BoundedConnector, CLEANUP_MS, settleWithin } from '../../pg/bounded.js';
import { Fence } from './connection-fence.js';
import { ConflictApply, conflictEvents, logCommittedConflicts, readLocalCommitInfo } from './conflict-apply.js';
import type { ConflictEvent, ConflictSettings } from '../../apply/conflict-policy.js';
import { probeStatement, resolveConflicts, resolvedInPlace, runCommitLsn, UNRESOLVED_GUARD, type CustomRunOptions, type ProbeRow } from './resolver-apply.js';
import { ResolverReplayError, type ResolverModes } from './resolver-replay.js';
import { UniqueChecks, UniqueConflictReplay } from './unique-conflicts.js';
import { Tombstones } from './tombstones.js';
import { withStoppedSpan } from './apply-stop.js';
import type { DeltaColumns } from './delta-statements.js';
import { RunPlanner, type KeyedChange, type Run, type TableQueue } from './run-planner.js';
import { RunStatements, type RunOutput } from './run-statements.js';

export interface ApplyWriterOptions {
  readonly url: string;
  readonly subscription: string;
  readonly originName: string;
  readonly batchMaxTransactions: number;
  readonly batchMaxChanges: number;
  readonly batchMaxAgeMs: number;
  /** Fold changes per key within a batch (net-effect mode); see net-effect.ts. */
  readonly netEffect: boolean;
  /** Insert runs at least this long go through COPY (0: never); see #issueCopy. */
  readonly copyMinRows: number;
  /** Transactions committed at or below this LSN are applied in exact order (replay after a fold conflict). */
  readonly exactUntil?: Lsn;
  /**
   * Tables never folded by this writer (qualified names): a table that met a fold conflict once
   * has unique constraints that tie its rows together (swaps), and each conflict costs a
   * reconnect and a replay, which under a steady stream of swaps never catches up.
   */
  readonly noFoldTables?: ReadonlySet<string>;
  /** Tables that met a unique violation: applied with per-index checks (unique-conflicts.ts). */
  readonly uniqueCheckTables?: ReadonlySet<string>;
  /**
   * False for a writer that applies one streamed transaction beside the main
   * writer: it binds the replication origin only around its own commit.
   */
  readonly holdsOrigin?: boolean;
  /**
   * With holdsOrigin false: an origin of its own, bound while it writes and swapped for the
   * subscription's origin at its commit. PostgreSQL records the session's origin in every WAL
   * record, and a publisher asked for `origin 'none'` filters record by record, so rows written
   * without one would be sent on by the reverse edge of a two-way pair (topology-stages.ts).
   */
  readonly markOrigin?: string;
  /** Add columns the source sends and the target lacks (built-in types only; missing-columns.ts). */
  readonly addMissingColumns?: boolean;
  /** Conflict policies (docs/conflicts.md); default: `error` for every table. */
  readonly conflicts?: ConflictSettings;
  /** Columns updated by difference (`col = col + (new - old)`), per qualified table name; delta-statements.ts. */
  readonly deltaColumns?: DeltaColumns;
  /** After a batch that logged conflicts committed: one event per conflict_log row. */
  readonly onConflicts?: (events: readonly ConflictEvent[]) => void;
  /** Custom resolver tables applied awaited after a replay (resolver-replay.ts); default: all optimistic. */
  readonly resolverModes?: Pick<ResolverModes, 'awaited'>;
  readonly logger: Logger;
}

/**
 * A folded batch hit a unique or exclusion violation: reordering was not safe
 * for it. The engine replays from the applied position with folding off up to
 * `untilLsn`, so that stretch is applied in exact order.
 */
export class FoldConflictError extends PgtideError {
  readonly untilLsn: Lsn;
  /** The target table whose statement failed, when known: the engine stops folding it. */
  readonly table: string | undefined;
  constructor(untilLsn: Lsn, cause: unknown, table?: string) {
    super('APPLY_FAILED', `a net-effect batch hit a unique violation${table ? ` on ${table}` : ''}; replaying it in exact order up to ${formatLsn(untilLsn)}`, { retryable: true, cause, sqlState: fromServerError(cause, 'target').sqlState });
    this.name = 'FoldConflictError';
    this.untilLsn = untilLsn;
    this.table = table;
  }
}


export interface ApplyStats {
  transactions: number;
  changes: number;
  batches: number;
  statements: number;
  /** Insert runs sent as COPY (counted in `statements` too). */
  copies: number;
  /** Rows an UPDATE or DELETE expected to find but did not (counted, logged, skipped). */
  missingRows: number;
}

/** Set when the apply connection closed: nothing more may be sent through this writer. */

interface CommittingBatch {
  readonly promises: readonly Promise<unknown>[];
  readonly endLsn: Lsn;
  readonly commitTime: PgTimestamp;
  readonly folded: boolean;
  readonly maxCommitLsn: Lsn;
  readonly conflicts: readonly ConflictEvent[];
}

type Rows = postgres.RowList<postgres.Row[]>;

/** A statement run inside a DDL barrier; its failure is the caller's to handle. */
export type DdlQuery = (text: string, params?: readonly (string | null)[]) => Promise<readonly postgres.Row[]>;

const PREPARED = { prepare: true } as const;
const UNPREPARED = {} as const;

export class ApplyWriter implements Sink {
  readonly #sql: postgres.Sql;
  readonly #fence: Fence;
  readonly #connector: BoundedConnector;
  /** The apply session's backend pid, so an abandoned session can be ended (target/stale-sessions.ts). */
  #backendPid: number | undefined;
  readonly #options: ApplyWriterOptions;
  readonly #catalog: TableCatalog;
  readonly #conflicts: ConflictApply;
  readonly #unique: UniqueChecks;
  readonly #tombstones: Tombstones;
  /** Conflicts the open batch logged; reported once it commits. */
  #batchConflicts: ConflictEvent[] = [];
  /** The open batch's changes as per-table runs (run-planner.ts). */
  readonly #planner: RunPlanner;
  /** Each run's statements under its table's conflict hooks (run-statements.ts). */
  readonly #runStatements: RunStatements;
  /** Where #runStatements hands them: this writer's pipelined sends. */
  readonly #runOutput: RunOutput = {
    send: (statement, context) => { this.#issue(statement, context); },
    sendLogged: (statement, context) => { this.#issueLogged(statement, context); },
    sendCounted: (statement, expected, table, operation, context) => { this.#issueCounted(statement, expected, table, operation, context); },
    sendCopy: (copy, context) => { this.#issueCopy(copy, context); },
  };
  #inFlight: Promise<unknown>[] = [];
  /** The failure that caused any others (see apply-failure.ts); only it is ever reported. */
  readonly #failures = new FirstFailure();
  /** The open batch's fold state; each statement's failure record points at its batch's mark. */
  #mark: BatchMark = { folded: false, maxCommitLsn: ZERO_LSN };
  /** The source transaction being queued, for naming it in an error. */
  #tx: TransactionInfo | undefined;
  #batchOpen = false;
  /** Between a source transaction's begin and commit: the batch may not be committed now. */
  #inSourceTx = false;
  /** A DDL change was applied in this source transaction: the batch commits right after it (ddlBarrier). */
  #commitAfterTx = false;
  #batchStartedAt = 0;
  #batchTransactions = 0;
  #queuedChanges = 0;
  #last: CommitInfo | undefined;
  /** Fold the current source transaction's changes (net-effect mode, outside an exact-replay stretch). */
  #foldThisTx = false;
  /**
   * Settles once the last COPY sent has handed all its data over. The server
   * reads nothing but COPY data until then, so statements issued meanwhile
   * are sent after it.
   */
  #copyGate: Promise<void> | undefined;
  /** Statements sent so far: an optimistic resolver probe resolves in place only if nothing went out after it. */
  #sent = 0;
  /** The open batch sent an optimistic resolver probe: its COMMIT goes behind UNRESOLVED_GUARD. */
  #probed = false;
  /** Settles once the last COPY completed on the server and postgres.js closed its stream. */
  #lastCopyDone: Promise<void> | undefined;
  #durable: Lsn;
  #durableCommitTime: PgTimestamp | undefined;
  /** Set once a write failed: from then on nothing may be acknowledged beyond the durable position. */
  #broken = false;
  /** A batch whose COMMIT was sent but not yet confirmed. */
  #committing: CommittingBatch | undefined;
  readonly stats: ApplyStats = { transactions: 0, changes: 0, batches: 0, statements: 0, copies: 0, missingRows: 0 };

  private constructor(sql: postgres.Sql, options: ApplyWriterOptions, durable: Lsn, fence: Fence, connector: BoundedConnector, conflicts: ConflictApply) {
    this.#sql = sql;
    this.#conflicts = conflicts;
    this.#unique = new UniqueChecks(options.uniqueCheckTables, options.subscription, conflicts.local);
    this.#tombstones = new Tombstones(options.conflicts?.tombstones?.retentionMs, options.subscription);
    const unique = this.#unique;
    this.#planner = new RunPlanner({ deltaColumns: options.deltaColumns, noFoldTables: options.noFoldTables, conflicts, uniqueChecks: (table) => unique.checks(table) });
    this.#runStatements = new RunStatements(conflicts, this.#unique, this.#tombstones, options.copyMinRows);
    this.#fence = fence;
    this.#connector = connector;
    this.#options = options;
    // Lookups run in the batch's transaction, behind its statements: their failures go through the
    // same bookkeeping, so a lookup's 25P02 never hides the statement that aborted the transaction.
    this.#catalog = new TableCatalog((text, params) => {
      const promise = this.#control(text, params);
      this.#track(promise, { echo: false });
      return promise;
    }, options.addMissingColumns ? (table, added) => {
      options.logger.warn({ table, columns: added.map((c) => c.name) }, `added column(s) ${added.map((c) => c.name).join(', ')} to ${table} on the target: the source sends them (schema change without DDL capture; additive only, see docs/ddl.md)`);
    } : undefined);
    this.#durable = durable;
  }

  static async open(options: ApplyWriterOptions): Promise<ApplyWriter> {
    const fence = new Fence();
    const connector = new BoundedConnector();
    const sql = openPostgres(options.url, 'apply', {
      ...connector.options,
      max: 1,
      idle_timeout: 0,
      max_lifetime: null,
      connect_timeout: 15,
      onnotice: () => {},
      // No array type lookup on connect: the writer sends arrays as text literals and reads no
      // arrays. postgres.js runs that lookup as a promise nobody awaits, so a session terminated
      // during it (pg_terminate_backend, a target restart) became an unhandled rejection that
      // ended the process.
      fetch_types: false,
      // Replica role: no FK checks, no ordinary triggers, exactly as the built-in apply worker.
      // synchronous_commit on: a batch is durable when COMMIT returns, so its end LSN may be
      // reported to the source as flushed (one fsync per batch, not per source transaction).
      // Hash and merge joins off: a keyed UPDATE/DELETE joins a run of keys against the table, and
      // with thousands of keys the planner otherwise prefers a full scan plus hash join; an index
      // probe per key (what the built-in worker does) measured 3x faster for 20k keys in 1M rows.
      // Read-only by default, and batches start with BEGIN READ WRITE: if the connection dies,
      // postgres.js reconnects and sends the statements still queued on a *new* session, outside
      // the batch's transaction. There they are read-only autocommit statements, so every write
      // fails instead of landing half a batch without its origin position.
      connection: {
        ...TEXT_FORMAT_SETTINGS,
        application_name: 'pgtide-apply',
        session_replication_role: 'replica',
        synchronous_commit: 'on',
        enable_hashjoin: 'off',
        enable_mergejoin: 'off',
        default_transaction_read_only: true,
        statement_timeout: 0,
        idle_in_transaction_session_timeout: 0,
      },
      // Once the connection closed, this writer sends nothing more; the engine starts a new one.
      onclose: () => { fence.close(); },
    } as postgres.Options<Record<string, postgres.PostgresType>>);
    try {
      const conflicts = new ConflictApply(options.conflicts, options.subscription, await readLocalCommitInfo(sql), options.originName);
      if (options.holdsOrigin === false) {
        if (options.markOrigin !== undefined) {
          await sql.unsafe(`SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`, [options.markOrigin]);
          await sql.unsafe(`SELECT pg_replication_origin_session_setup($1)`, [options.markOrigin]);
        }
        const [session] = await sql.unsafe<{ pid: number }[]>(`SELECT pg_backend_pid() AS pid`);
        const writer = new ApplyWriter(sql, options, ZERO_LSN, fence, connector, conflicts);
        writer.#backendPid = session?.pid;
        return writer;
      }
      await sql.unsafe(`SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`, [options.originName]);
      const durable = await reconcileOrigin(sql, options);
      const [session] = await sql.unsafe<{ pid: number }[]>(`SELECT pg_backend_pid() AS pid, pg_replication_origin_session_setup($1)`, [options.originName]);
      const writer = new ApplyWriter(sql, options, durable, fence, connector, conflicts);
      writer.#backendPid = session?.pid;
      return writer;
    } catch (error) {
      await settleWithin(sql.end({ timeout: 1 }), CLEANUP_MS);
      connector.destroyAll();
      const mapped = fromServerError(error, 'target');
      if (mapped.sqlState === '55006') {
        throw new PgtideError('SLOT_IN_USE', `another process is already applying subscription "${options.subscription}" to this target database (its replication origin ${options.originName} is in use). Stop that process; pgtide retries.`, { sqlState: mapped.sqlState, retryable: true, cause: error });
      }
      if (mapped.sqlState === '42501') {
        throw new PgtideError('PERMISSION_DENIED', `the target user may not use replication origins or session_replication_role. Connect as a superuser, or GRANT EXECUTE on the pg_replication_origin_* functions and SET on session_replication_role (PostgreSQL 15+); see docs/privileges.md.`, { sqlState: mapped.sqlState, cause: error });
      }
      throw mapped;
    }
  }

  get backendPid(): number | undefined { return this.#backendPid; }

  /** End LSN of the last source transaction whose target transaction has committed. */
  get durableLsn(): Lsn { return this.#durable; }
  get durableCommitTime(): PgTimestamp | undefined { return this.#durableCommitTime; }
  /** True while a target transaction is open (applied but not yet committed work exists). */
  get hasPendingWork(): boolean { return this.#batchOpen || this.#committing !== undefined || this.#broken; }
  /** True when the open batch ends at a source transaction boundary and may be committed. */
  get atBoundary(): boolean { return !this.#inSourceTx; }

  begin(tx: TransactionInfo): void {
    this.#inSourceTx = true;
    this.#tx = tx;
    this.#foldThisTx = this.#options.netEffect && tx.commitLsn > (this.#options.exactUntil ?? ZERO_LSN);
    if (tx.commitLsn > this.#mark.maxCommitLsn) this.#mark.maxCommitLsn = tx.commitLsn;
    if (!this.#batchOpen) {
      this.#batchOpen = true;
      this.#batchStartedAt = Date.now();
      this.#issue({ text: 'BEGIN READ WRITE', params: [] });
      const prune = this.#tombstones.pruneDue();
      if (prune) this.#issue(prune);
      const previous = this.#committing;
      if (previous && this.#options.holdsOrigin !== false) {
        // If the previous batch failed, its ROLLBACK must not let this one commit past the gap:
        // this guard fails (and so aborts this batch) unless the previous batch's progress row
        // committed. Not the origin: on PostgreSQL 16+ an aborted batch may have advanced it.
        // (Division by the boolean as int: a constant 1/0 in a CASE would fail at plan time.)
        this.#issue({
          text: `SELECT 1 / (coalesce((SELECT end_lsn FROM pgtide.apply_progress WHERE subscription = $1::text), '0/0') >= $2::text::pg_lsn)::int`,
          params: [this.#options.subscription, formatLsn(previous.endLsn)],
        }, { echo: true });
      }
    }
  }

  change(change: RowChange): void | Promise<void> {
    if (change.kind === 'message') return;
    if (change.kind === 'truncate') return this.#truncate(change.relations, change.restartIdentity);
    const queue = this.#planner.current(change.relation);
    if (queue) {
      this.#enqueue(queue, change);
      return this.#maybeDrain();
    }
    return this.#enqueueResolving(change);
  }

  async #enqueueResolving(change: KeyedChange): Promise<void> {
    const old = this.#planner.superseded(change.relation);
    // A new definition of a table already queued (DDL) is a barrier for that table.
    if (old) this.#emitQueue(old);
    const table = await this.#resolve(change.relation);
    if (hasReplicaTriggers(table)) noteReplicaTriggers(this.#options.logger, this.#options.subscription, table);
    this.#enqueue(this.#planner.open(table), change);
    await this.#maybeDrain();
  }

  commit(info: CommitInfo): void | Promise<void> {
    this.#last = info;
    this.#inSourceTx = false;
    this.#batchTransactions++;
    this.stats.transactions++;
    if (this.#commitAfterTx || this.#batchTransactions >= this.#options.batchMaxTransactions
      || this.#queuedChanges >= this.#options.batchMaxChanges
      || Date.now() - this.#batchStartedAt >= this.#options.batchMaxAgeMs) {
      return this.flush();
    }
  }

  /**
   * Commits the open batch, if any. Called at batch limits and by the engine
   * when the stream goes idle, so latency stays low under light load.
   */
  async flush(): Promise<void> {
    if (!this.#batchOpen || this.#inSourceTx) return;
    const last = this.#last;
    if (!last) throw new PgtideError('INTERNAL', 'flush with no committed source transaction in the batch');
    for (const queue of this.#planner.queues()) this.#emitQueue(queue);
    if (this.#probed) this.#issue(UNRESOLVED_GUARD, { echo: true });
    this.#probed = false;
    const commitTime = pgTimestampToDate(last.commitTime).toISOString();
    this.#issue({
      text: `INSERT INTO pgtide.apply_progress AS p (subscription, end_lsn, commit_time, applied_at, transactions)
             VALUES ($1::text, $2::text::pg_lsn, $3::text::timestamptz, now(), $4::text::bigint)
             ON CONFLICT (subscription) DO UPDATE SET end_lsn = EXCLUDED.end_lsn, commit_time = EXCLUDED.commit_time, applied_at = now(), transactions = p.transactions + EXCLUDED.transactions`,
      params: [this.#options.subscription, formatLsn(last.endLsn), commitTime, String(this.#batchTransactions)],
    });
    // One Query message: the server never runs xact_setup without the COMMIT right behind it,
    // so a client that dies mid-batch cannot leave an aborted transaction that moved the origin.
    // The literals are ours (an LSN and an ISO timestamp), not user data.
    this.#issue({ text: `SELECT pg_replication_origin_xact_setup('${formatLsn(last.endLsn)}', '${commitTime}'); COMMIT`, params: [] });
    const committing: CommittingBatch = { promises: this.#inFlight, endLsn: last.endLsn, commitTime: last.commitTime, folded: this.#mark.folded, maxCommitLsn: this.#mark.maxCommitLsn, conflicts: this.#batchConflicts };
    this.#inFlight = [];
    this.#batchConflicts = [];
    this.stats.batches++;
    this.#batchOpen = false;
    this.#commitAfterTx = false;
    this.#batchTransactions = 0;
    this.#queuedChanges = 0;
    this.#mark = { folded: false, maxCommitLsn: ZERO_LSN };
    // Pipelined commits: this batch's COMMIT is on its way; the next batch may be built and sent
    // behind it while the target works. Only one batch waits for its COMMIT at a time.
    const previous = this.#committing;
    this.#committing = committing;
    if (previous) await this.#finishCommit(previous);
  }

  /** Commits the open batch (when it ends at a boundary) and waits until every sent batch has committed. */
  async commitPending(): Promise<void> {
    await this.flush();
    await this.drainCommits();
  }

  /** Waits until every sent batch has committed (before handing the origin over, going idle, stopping). */
  async drainCommits(): Promise<void> {
    const pending = this.#committing;
    if (!pending) return;
    // Stays set while awaited: until the COMMIT is confirmed the writer is not quiescent,
    // so no keepalive position may be acknowledged past this batch.
    try {
      await this.#finishCommit(pending);
    } finally {
      if (this.#committing === pending) this.#committing = undefined;
    }
  }

  async #finishCommit(batch: CommittingBatch): Promise<void> {
    await this.#settled(batch.promises);
    this.#throwIfFailed();
    if (batch.endLsn > this.#durable) {
      this.#durable = batch.endLsn;
      this.#durableCommitTime = batch.commitTime;
    }
    if (batch.conflicts.length > 0) {
      logCommittedConflicts(this.#options.logger, batch.conflicts);
      this.#options.onConflicts?.(batch.conflicts);
    }
  }

  /** Abandons the open batch (shutdown or a failure elsewhere); the origin position does not move. */
  async rollback(): Promise<void> {
    this.#planner.clear();
    this.#batchConflicts = [];
    this.#queuedChanges = 0;
    this.#mark = { folded: false, maxCommitLsn: ZERO_LSN };
    this.#batchTransactions = 0;
    this.#probed = false;
    const wasOpen = this.#batchOpen;
    this.#batchOpen = false;
    this.#inSourceTx = false;
    this.#commitAfterTx = false;
    const committing = this.#committing;
    this.#committing = undefined;
    // A batch whose COMMIT was sent may still commit; the durable position is re-read from the
    // replication origin by the next writer, so it is not guessed here.
    // Bounded: statements queued on a connection that was reset may never settle (postgres.js
    // 3.4.9, see src/pg/bounded.ts); after a time-out this writer is done for.
    const pending = [...(committing?.promises ?? []), ...this.#inFlight];
    this.#inFlight = [];
    const settled = await settleWithin(Promise.allSettled(pending), CLEANUP_MS);
    this.#copyGate = undefined;
    this.#lastCopyDone = undefined;
    this.#failures.clear();
    if (settled === 'timeout') this.#abandon();
    // No ROLLBACK on a closed connection: postgres.js would run it on a fresh session, or queue
    // it on the dying one where it never settles. The server rolls back a lost session itself.
    if (wasOpen && !this.#fence.closed && (await settleWithin(this.#sql.unsafe('ROLLBACK'), CLEANUP_MS)) === 'timeout') this.#abandon();
  }

  /** A clean-up step timed out: the connection is unusable; nothing more is sent through it. */
  #abandon(): void {
    this.#fence.close();
    this.#broken = true;
    this.#connector.destroyAll();
  }

  /**
   * A replication origin can be bound to one session at a time. To commit a
   * streamed transaction applied on another connection, the main writer
   * releases the origin, the other writer binds it for its commit (so the
   * origin's progress and the changes' origin marking stay exact), then the
   * main writer takes it back.
   */
  async releaseOrigin(): Promise<void> {
    await this.#control(`SELECT pg_replication_origin_session_reset()`).catch((e: unknown) => { throw this.#originError(e); });
  }

  async acquireOrigin(): Promise<void> {
    if (this.#options.markOrigin !== undefined) await this.releaseOrigin();
    await this.#control(`SELECT pg_replication_origin_session_setup($1)`, [this.#options.originName]).catch((e: unknown) => { throw this.#originError(e); });
  }

  /**
   * A statement outside the batch's bookkeeping (its failure is the caller's),
   * sent after everything issued before it: behind a COPY still sending its
   * data, like #issue, since the server takes nothing else until CopyDone.
   */
  #control(text: string, params: readonly (string | null)[] = []): Promise<Rows> {
    // After the connection closed, postgres.js would run this on a new session: binding the
    // origin there would let a commit that never happened look done.
    if (this.#fence.closed) return this.#connectionLost();
    return this.#send(text, params, UNPREPARED, true);
  }

  /**
   * Sends now, or, behind a COPY still sending its data, once it has handed
   * that data over: callbacks on one promise run in the order they were
   * registered, so the order of statements is kept. `evenIfCopyFailed` sends
   * a statement whose own outcome the caller checks after a failed COPY too.
   */
  #send(text: string, params: readonly (string | null)[], options: typeof PREPARED | typeof UNPREPARED, evenIfCopyFailed = false): Promise<Rows> {
    const send = (): Promise<Rows> => this.#sql.unsafe(text, params as string[], options).execute() as unknown as Promise<Rows>;
    this.#sent++;
    const gate = this.#copyGate;
    if (!gate) return send();
    return evenIfCopyFailed ? gate.then(send, send) : gate.then(send);
  }

  /** Handing the origin over fails when a connection was lost in between: retry from the target's state. */
  #originError(error: unknown): PgtideError {
    const mapped = fromServerError(error, 'target');
    return new PgtideError(mapped.code === 'INTERNAL' ? 'APPLY_FAILED' : mapped.code, `handing over the replication origin failed: ${mapped.message}`, { sqlState: mapped.sqlState, retryable: true, cause: error });
  }

  /** Another writer committed up to here on the main writer's behalf. */
  noteDurable(endLsn: Lsn, commitTime: PgTimestamp): void {
    if (endLsn > this.#durable) {
      this.#durable = endLsn;
      this.#durableCommitTime = commitTime;
    }
  }

  /**
   * A DDL barrier (ddl-apply.ts). Sends what is queued and waits until it ran,
   * so a failure before the DDL is reported as itself and not as the DDL's;
   * then `work` runs its statements in the open batch's transaction, each
   * awaited by the caller. Afterwards every table definition is looked up
   * again, and the batch commits right after this source transaction (a new
   * enum value, for one, is usable only once committed).
   */
  async ddlBarrier<T>(work: (query: DdlQuery) => Promise<T>): Promise<T> {
    if (!this.#batchOpen) throw new PgtideError('INTERNAL', 'a DDL change arrived outside a source transaction');
    this.emitAll();
    const sent = this.#inFlight;
    this.#inFlight = [];
    await this.#settleSome([...(this.#committing?.promises ?? []), ...sent]);
    this.#commitAfterTx = true;
    try {
      return await work((text, params = []) => this.#control(text, params));
    } finally {
      this.#catalog.clear();
      this.#planner.clear();
    }
  }

  /**
   * A statement of pgtide's own state in the open batch, after everything queued
   * (the quarantine row of isolation-stage.ts): it commits with the batch's position.
   */
  issueInBatch(statement: { readonly text: string; readonly params: readonly (string | null)[] }): void {
    if (!this.#batchOpen) throw new PgtideError('INTERNAL', 'a state statement was issued outside a batch');
    this.emitAll();
    this.#issue(statement);
  }

  /** Sends every queued statement now, without waiting for the results. */
  emitAll(): void {
    for (const queue of this.#planner.queues()) this.#emitQueue(queue);
    this.#queuedChanges = 0;
  }

  /** Marks a subtransaction's start inside the open transaction (streamed apply). */
  savepoint(name: string): void {
    this.emitAll();
    this.#issue({ text: `SAVEPOINT ${quoteIdent(name)}`, params: [] });
  }

  /** Undoes an aborted subtransaction: everything since its savepoint. */
  rollbackToSavepoint(name: string): void {
    this.emitAll();
    this.#issue({ text: `ROLLBACK TO SAVEPOINT ${quoteIdent(name)}`, params: [] });
  }

  /**
   * Rolls back, unbinds the origin and ends the connection, each step within
   * a time limit, and then destroys the socket: a close must never hang the
   * reconnect that follows it (issue 10, case 6).
   */
  async close(): Promise<void> {
    await settleWithin(this.rollback(), CLEANUP_MS * 2);
    // The origin is released by the server when its session ends; on a live one, release it now.
    if (!this.#fence.closed) {
      await settleWithin(this.#sql.unsafe(`SELECT pg_replication_origin_session_reset()`), CLEANUP_MS);
      // A streamed connection's own origin is dropped with it: every origin holds one of the
      // target's replication state slots (max_replication_slots; max_active_replication_origins
      // on 18, default 10) for as long as it exists, so an edge keeps one between large
      // transactions. One left by a crash is reused by the next open.
      if (this.#options.markOrigin !== undefined) {
        await settleWithin(this.#sql.unsafe(`SELECT pg_replication_origin_drop($1)`, [this.#options.markOrigin]), CLEANUP_MS);
      }
    }
    // A lost connection has nothing to end gracefully; end() would wait out its time-out
    // for statements that postgres.js will never settle.
    if (!this.#fence.closed) await settleWithin(this.#sql.end({ timeout: 1 }), CLEANUP_MS);
    this.#fence.close();
    this.#connector.destroyAll();
  }

  #enqueue(queue: TableQueue, change: KeyedChange): void {
    // Into or out of a table with replica triggers: what is queued before goes first (replica-triggers.ts).
    if (this.#planner.switchTo(queue)) {
      for (const other of this.#planner.queues()) this.#emitQueue(other);
    }
    this.#queuedChanges++;
    this.stats.changes++;
    if (queue.add(change, this.#tx, this.#foldThisTx)) this.#mark.folded = true;
  }

  async #truncate(relations: readonly Relation[], restartIdentity: boolean): Promise<void> {
    // TRUNCATE is a barrier: everything queued before it must run first.
    for (const queue of this.#planner.queues()) this.#emitQueue(queue);
    const names: string[] = [];
    for (const relation of relations) names.push((await this.#resolve(relation)).relation.qualifiedName);
    if (names.length) this.#issue(truncateStatement(names, restartIdentity), { table: names.join(', '), span: extendSpan(undefined, this.#tx) });
    this.stats.changes++;
  }

  #maybeDrain(): void | Promise<void> {
    if (this.#queuedChanges < this.#options.batchMaxChanges) return;
    // One source transaction larger than a batch: send what is queued, keep the target transaction open.
    // The previous drain is awaited only now, so the target executes one drain while the next is
    // decoded and built; at most two drains' statements (and their parameters) are in memory.
    const previous = this.#inFlight;
    this.#inFlight = [];
    for (const queue of this.#planner.queues()) this.#emitQueue(queue);
    this.#queuedChanges = 0;
    return this.#settleSome(previous);
  }

  /**
   * Waits for statements already sent; their failures are the bookkeeping's
   * (#throwIfFailed). Bounded once the connection is gone (Fence.bound).
   */
  async #settled(pending: readonly Promise<unknown>[]): Promise<void> {
    try {
      await this.#fence.bound(Promise.all(pending));
    } catch (error) {
      if (this.#fence.closed && error instanceof PgtideError && error.code === 'CONNECTION_FAILED') {
        this.#broken = true;
        this.#failures.record({ error, context: {}, mark: this.#mark });
        return;
      }
      throw error;
    }
  }

  async #settleSome(pending: Promise<unknown>[]): Promise<void> {
    await this.#settled(pending);
    this.#throwIfFailed();
  }

  /**
   * A catalog lookup that fails is most often the echo (25P02) of a statement
   * sent before it: wait until everything sent before it settled and raise the
   * first failure; the lookup's own error only when nothing failed before it.
   */
  async #resolve(relation: Relation): Promise<TargetTable> {
    try {
      const table = await this.#catalog.resolve(relation);
      await this.#unique.load(table, (text, params) => {
        const promise = this.#control(text, params);
        this.#track(promise, { echo: false });
        return promise;
      });
      return table;
    } catch (error) {
      await this.#settled([...(this.#committing?.promises ?? []), ...this.#inFlight]);
      this.#throwIfFailed();
      throw error;
    }
  }

  #emitQueue(queue: TableQueue): void {
    const { runs, span } = queue.take();
    const context: StatementContext = { table: queue.table.relation.qualifiedName, span };
    for (const run of runs) {
      if (!this.#issueResolved(run, context)) this.#runStatements.emit(run, context, this.#runOutput);
    }
  }

  /** Nothing may be sent once the connection closed: the batch fails and the engine reconnects. */
  #connectionLost(): Promise<never> {
    const lost = new PgtideError('CONNECTION_FAILED', 'the target connection of the apply session was lost; reconnecting', { retryable: true });
    this.#failures.record({ error: lost, context: {}, mark: this.#mark });
    this.#broken = true;
    const rejected = Promise.reject(lost);
    rejected.catch(() => {});
    return rejected;
  }

  #issue(statement: Statement, context: StatementContext = {}): Promise<Rows> {
    if (this.#fence.closed) return this.#connectionLost();
    this.stats.statements++;
    // execute() sends now; postgres.js pipelines the statements on the one connection.
    // Prepared: `unsafe` defaults to unnamed statements, and postgres.js sends an unnamed
    // statement with parameters as Parse/Describe and waits for the parameter types before
    // Bind/Execute, which stops the pipeline at every statement. A named statement pays that
    // once per statement text (texts depend on table, kind and column set, not on row counts).
    const options = statement.params.length > 0 ? PREPARED : UNPREPARED;
    const promise = this.#send(statement.text, statement.params, options);
    this.#track(promise, context.span || context.echo ? context : { ...context, span: this.#batchSpan() });
    return promise;
  }

  /** Statements outside a table's runs (BEGIN, progress, COMMIT) carry the current source transaction. */
  #batchSpan(): SourceSpan | undefined {
    return extendSpan(undefined, this.#tx);
  }

  #track(promise: Promise<unknown>, context: StatementContext): void {
    const mark = this.#mark;
    // A COPY's error arrives through its completion, after the stream: FirstFailure lets a real
    // failure replace an echo (25P02) recorded before it.
    this.#inFlight.push(promise.catch((error: unknown) => { this.#failures.record({ error, context, mark }); }));
  }

  /**
   * COPY cannot be pipelined like the other statements: postgres.js hands out
   * the data stream only once the server answered CopyInResponse, that is
   * after every statement before it ran, and until the data is sent nothing
   * else may go out. So a COPY costs the target one round trip of idleness,
   * against less work per row (see copyInsertStatement); end to end that did
   * not pay in the benchmarks, hence `copyMinRows` is 0 (off) by default.
   *
   * The gate settles once the stream ended (postgres.js then sends CopyDone
   * and accepts queries again); the COPY's outcome comes from copyIn's
   * completion, which also carries the server's error. A COPY starts only
   * after the previous one completed and its stream closed: postgres.js
   * destroys a finished COPY's stream by sending CopyFail, harmless between
   * COPYs and fatal to one under way.
   */
  #issueCopy(copy: CopyStatement, context: StatementContext): void {
    if (this.#fence.closed) {
      void this.#connectionLost();
      return;
    }
    this.stats.statements++;
    this.stats.copies++;
    this.#sent++;
    const previousDone = this.#lastCopyDone;
    const done = deferred<void>();
    done.promise.catch(() => {});
    const run = async (): Promise<void> => {
      if (previousDone) await previousDone;
      const { stream, completion } = await copyIn(this.#sql, copy.text);
      const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
      completion.then(() => closed).then(done.resolve, done.reject);
      await new Promise<void>((resolve, reject) => {
        stream.on('error', reject);
        const last = copy.chunks.length - 1;
        for (let i = 0; i < last; i++) stream.write(copy.chunks[i]!);
        // Once the last write is flushed, end() runs the stream's final step at once: CopyDone.
        stream.write(copy.chunks[last]!, (error) => {
          if (error) return reject(error);
          stream.end();
          resolve();
        });
      });
    };
    const gate = this.#copyGate ? this.#copyGate.then(run) : run();
    this.#copyGate = gate;
    gate.then(() => { if (this.#copyGate === gate) this.#copyGate = undefined; }, done.reject);
    this.#track(gate, context);
    this.#track(done.promise, context);
    this.#lastCopyDone = done.promise;
  }

  /**
   * A run of a table under a custom resolver (resolver-apply.ts). Optimistic:
   * the probe is pipelined like any statement. Conflicts in its answer are
   * resolved in place when nothing went out after it; otherwise the batch's
   * COMMIT guard fails it and it is replayed (resolver-replay.ts), with the
   * table awaited: its probe then holds the pipeline through the COPY gate
   * (#send waits on it, later COPYs chain behind it) until the follow-ups are
   * sent. False: not a resolver run.
   */
  #issueResolved(run: Run, context: StatementContext): boolean {
    const custom = this.#conflicts.custom(run.table);
    const table = run.table.relation.qualifiedName;
    const optimistic = !(this.#options.resolverModes?.awaited(table, runCommitLsn(run)) ?? false);
    const probe = custom ? probeStatement(run, custom.local, optimistic) : undefined;
    if (!custom || !probe) return false;
    const probed = this.#issue(probe, context);
    if (!optimistic) {
      this.#hold(probed.then((rows) => (rows.length > 0 ? this.#sendResolution(run, rows, custom, context, false) : undefined)), context);
      return true;
    }
    this.#probed = true;
    const sentAt = this.#sent;
    const mark = this.#mark;
    this.#track(probed.then((rows) => {
      if (rows.length === 0) return;
      // In place only inside the live batch: a rollback under way sends its ROLLBACK without waiting for follow-ups.
      if (this.#sent === sentAt && this.#batchOpen && !this.#failures.pending) this.#hold(this.#sendResolution(run, rows, custom, context, true), context);
      else this.#failures.record({ error: new ResolverReplayError(table, mark), context, mark });
    }, () => {}), context);
    return true;
  }

  /** Statements issued from now on wait until `gate` settles (the COPY gate). */
  #hold(gate: Promise<void>, context: StatementContext): void {
    this.#copyGate = gate;
    gate.then(() => { if (this.#copyGate === gate) this.#copyGate = undefined; }, () => {});
    this.#track(gate, context);
  }

  /** The resolver decides a probe's conflicts; their follow-ups are sent directly (#send would wait for the gate they hold). */
  async #sendResolution(run: Run, rows: Rows, custom: CustomRunOptions, context: StatementContext, optimistic: boolean): Promise<void> {
    const batch = this.#batchConflicts;
    const resolution = await resolveConflicts(run, rows as unknown as readonly ProbeRow[], custom);
    const sendNow = (statement: Statement): Promise<Rows> => {
      if (this.#fence.closed) return this.#connectionLost();
      this.stats.statements++;
      this.#sent++;
      const promise = this.#sql.unsafe(statement.text, statement.params as string[]).execute() as unknown as Promise<Rows>;
      this.#track(promise, context);
      return promise;
    };
    for (const write of resolution.writes) void sendNow(write);
    sendNow(resolution.log).then((logged) => { batch.push(...conflictEvents(logged, context.table ?? '')); }, () => {});
    if (optimistic) void sendNow(resolvedInPlace(rows.length));
  }

  /** A statement that resolved conflicts returns one (kind, resolution) row per conflict_log row it wrote. */
  #issueLogged(statement: Statement, context: StatementContext): void {
    const batch = this.#batchConflicts;
    this.#issue(statement, context).then((rows) => { batch.push(...conflictEvents(rows, context.table ?? '')); }, () => {});
  }

  #issueCounted(statement: Statement, expected: number, table: TargetTable, what: string, context: StatementContext): void {
    const promise = this.#issue(statement, context);
    const mark = this.#mark;
    promise.then((result) => {
      const missing = expected - result.count;
      if (missing < 0) {
        // Keyed statements check this inside the transaction where the target could hold
        // duplicate keys (statements.ts, guardRowCount), and FULL statements address one
        // (tableoid, ctid); this catches what those cannot (a row move), after the fact.
        this.#failures.record({ error: new PgtideError('APPLY_FAILED', `${what} on ${table.relation.qualifiedName} changed ${result.count} target rows for ${expected} source change(s): the target holds duplicate rows for a replica identity key. Remove them on the target; pgtide retries.`, { retryable: true }), context, mark });
      }
      if (missing > 0) {
        // A missing row is a conflict (the target diverged). Like the built-in worker, log and skip it.
        this.stats.missingRows += missing;
        this.#options.logger.warn({ table: table.relation.qualifiedName, operation: what, missing }, `${what} found ${missing} of ${expected} row(s) missing on the target; skipped`);
      }
    }, () => {});
  }

  #throwIfFailed(): void {
    const record = this.#failures.take();
    if (record !== undefined) {
      const failure = record.error;
      this.#broken = true;
      // The connection died: whatever failed after that (statements replayed on the new
      // session, read-only and without the origin) says nothing about the data. Reconnect.
      if (this.#fence.closed) throw new PgtideError('CONNECTION_FAILED', 'the target connection of the apply session was lost; reconnecting', { retryable: true, cause: failure });
      if (failure instanceof PgtideError) throw failure;
      const sqlState = fromServerError(failure, 'target').sqlState;
      if (record.mark.folded && (sqlState === '23505' || sqlState === '23P01')) throw new FoldConflictError(record.mark.maxCommitLsn, failure, record.context.table);
      if (sqlState === '23505' && record.context.table !== undefined && this.#unique.replays(record.context.table)) throw new UniqueConflictReplay(record.context.table, failure);
      throw withStoppedSpan(applyError(record, this.#options.url), record);
    }
  }
}

/**
 * Returns the durable position: the apply_progress row, written in the same
 * target transaction as the data it describes. An origin ahead of it was
 * advanced by an aborted transaction (PostgreSQL 16+, see the file comment)
 * and is moved back, so status and any later reader agree with the data.
 * Runs before pg_replication_origin_session_setup: advancing needs the origin
 * unbound.
 */
async function reconcileOrigin(sql: postgres.Sql, options: ApplyWriterOptions): Promise<Lsn> {
  const [row] = await sql.unsafe<{ origin: string | null; progress: string | null }[]>(
    `SELECT pg_replication_origin_progress($1, true)::text AS origin,
            (SELECT end_lsn::text FROM pgtide.apply_progress WHERE subscription = $2) AS progress`,
    [options.originName, options.subscription]);
  const durable = row?.progress ? parseLsn(row.progress) : ZERO_LSN;
  const origin = row?.origin ? parseLsn(row.origin) : ZERO_LSN;
  if (origin !== durable) {
    if (origin > durable) {
      options.logger.warn({ origin: formatLsn(origin), applied: formatLsn(durable) },
        'the replication origin was ahead of the applied position (an aborted apply transaction advanced it); moving it back to the applied position');
    }
    await sql.unsafe(`SELECT pg_replication_origin_advance($1, $2::text::pg_lsn)`, [options.originName, formatLsn(durable)]);
  }
  return durable;
}
