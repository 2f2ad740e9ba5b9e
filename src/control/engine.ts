/**
 * The engine's lifecycle: prepare (checks, publication, state), initial copy,
 * then stream and apply until stopped, reconnecting with backoff on any
 * retryable failure. Each streaming attempt starts fresh from the position
 * recorded on the target, which is what makes a crash at any moment safe.
 */
import postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { legacyOriginName, originName, publicationName, publicationNames, slotName, STREAMED_APPLY_CONNECTIONS, streamedOriginName, type PgtideConfig } from './config.js';
import { PgtideError, fromServerError } from '../core/errors.js';
import { checkSource, publishedTables, type PublishedTable } from '../source/source-catalog.js';
import { ReplicationConnection, protocolVersionFor } from '../source/replication-connection.js';
import { copyTables } from '../copy/table-copy.js';
import { formatLsn, maxLsn, ZERO_LSN, type Lsn } from '../core/lsn.js';
import { FoldConflictError } from '../sinks/postgres/apply-writer.js';
import { ResolverModes, ResolverReplayError } from '../sinks/postgres/resolver-replay.js';
import { UniqueConflictReplay } from '../sinks/postgres/unique-conflicts.js';
import { openPostgresSink } from '../sinks/postgres/postgres-sink.js';
import { NdjsonSink } from '../sinks/ndjson/ndjson-sink.js';
import type { OpenedSink } from '../sinks/sink.js';
import { StateStore, type TableStateRow } from '../state/state-store.js';
import { LastErrorStore } from '../state/last-error.js';
import { SequenceSync, type SequenceSyncReport } from '../sequences/sequence-sync.js';
import { startSequenceSyncLoop, sequenceProblemLog, type SequenceSyncLoop } from './sequence-sync-job.js';
import { checkPrivileges } from './privileges.js';
import { createOwnSlot, guardSlot, refuseOtherSource, refuseSourceIsTarget, serverIdentity, type GuardContext } from './slot-guardian.js';
import { LeaderLock } from './leader-lock.js';
import { Heartbeat, HEARTBEAT_PREFIX } from '../source/heartbeat.js';
import { retireLegacyOrigin } from '../state/legacy-origin.js';
import { qualify, textArrayLiteral } from '../core/sql.js';
import { tableMissingOnTarget } from '../core/missing-table.js';
import { runAttempt } from '../pipeline/attempt.js';
import type { CopyProgress, CopyTableSpec } from '../copy/copy-options.js';
import { BoundedConnector, CLEANUP_MS, settleWithin } from '../pg/bounded.js';
import { StallWatchdog } from './watchdog.js';
import { terminateAbandonedApplySessions } from '../state/stale-sessions.js';
import { ensurePublications } from './publications.js';
import { bootstrapSchema } from './schema-job.js';
import { topologyStages } from '../apply/topology-stages.js';
import { OriginMatcher, originPolicy } from '../apply/origin-policy.js';
import { refuseSharedSequenceSync } from './topology-config.js';
import { refuseLoopBack } from './loop-guard.js';
import { prepareNdjson } from './ndjson-prepare.js';
import type { Prepared } from './prepared.js';
import { postgresTargetUrl } from './target-config.js';
import { ddlStages, installCapture } from './ddl-setup.js';
import { DeferredIndexBuilder } from '../sinks/postgres/deferred-indexes.js';
import type { TransactionSink } from '../changes/change.js';
import type { ApplyWriter } from '../sinks/postgres/apply-writer.js';
import { checkCommitTimestamps } from './commit-timestamp-check.js';
import { judgesByTime } from '../apply/conflict-time.js';
import { conflictSettings, type LoadedResolvers } from './conflict-config.js';
import { loadResolvers } from './resolver-loader.js';
import { deltaColumnSettings } from './conflict-config.js';
import { checkDeltaColumns } from './delta-columns.js';
import type { ConflictEvent } from '../apply/conflict-policy.js';
import { QuarantineControl } from './quarantine-control.js';
import type { QuarantinedInfo } from '../sinks/postgres/isolation-stage.js';

export interface EngineHooks {
  readonly onCopyProgress?: (progress: readonly CopyProgress[]) => void;
  readonly onCopyDone?: () => void;
  /** After each committed batch: position and counts, for lag displays and metrics. */
  readonly onApplied?: (info: { readonly durableLsn: Lsn; readonly serverWalEnd: Lsn; readonly transactions: number; readonly changes: number }) => void;
  readonly onStreaming?: () => void;
  readonly onSequenceReport?: (report: SequenceSyncReport) => void;
  /** After a batch that resolved conflicts by policy committed (one event per conflict_log row). */
  readonly onConflicts?: (events: readonly ConflictEvent[]) => void;
  /** After a source transaction was quarantined instead of applied (docs/quarantine.md). */
  readonly onQuarantined?: (info: QuarantinedInfo) => void;
  /** First start, slot created, copy not begun: the snapshot the copy reads (`pgtide join` reads the peer edges' positions under it; control/join.ts). */
  readonly onSnapshot?: (snapshot: { readonly name: string; readonly consistentPoint: Lsn }) => Promise<void>;
}

export interface EngineState {
  readonly phase: 'starting' | 'copying' | 'streaming' | 'reconnecting' | 'stopped';
  readonly durableLsn: Lsn | undefined;
}

/** Exponential backoff from 0.5 s to 30 s, with ±25 % jitter so many processes do not retry in step. */
function retryDelayMs(attempt: number): number {
  return Math.min(30_000, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
}

export class Engine {
  readonly #config: PgtideConfig;
  readonly #logger: Logger;
  readonly #hooks: EngineHooks;
  #phase: EngineState['phase'] = 'starting';
  /** The edge's replication origin, under which the initial copy commits (copy/copy-origin.ts). */
  #copyOrigin: string | undefined;
  #durable: Lsn | undefined;
  /** After a fold conflict: apply in exact order up to here. */
  #exactUntil: Lsn = ZERO_LSN;
  /** Tables that met a fold conflict: applied unfolded for the rest of this process's life. */
  readonly #noFoldTables = new Set<string>();
  /** Tables that met a unique violation: checked index by index until pgtide restarts (unique-conflicts.ts). */
  readonly #uniqueCheckTables = new Set<string>();
  /** Apply sessions abandoned by the watchdog, ended before the next attempt opens its own. */
  #abandonedApplyPids: number[] = [];
  /** Backend pids of the apply sessions (main and streamed) of the current attempt. */
  readonly #attemptApplyPids = new Set<number>();
  #targetPool: postgres.Sql | undefined;
  #sourcePool: postgres.Sql | undefined;
  /** Sockets of the source and target pools, dropped when the watchdog fires. */
  #poolConnectors: readonly BoundedConnector[] = [];
  /** Custom conflict resolver modules, loaded once at start (resolver-loader.ts). */
  #resolvers: LoadedResolvers | undefined;
  /** Resolver tables applied awaited after a replay (resolver-replay.ts). */
  readonly #resolverModes = new ResolverModes();
  /** Stops on deterministic apply errors, `pgtide skip`, and quarantine (quarantine-control.ts). */
  #quarantine: QuarantineControl | undefined;

  constructor(config: PgtideConfig, logger: Logger, hooks: EngineHooks = {}) {
    this.#config = config;
    this.#logger = logger;
    this.#hooks = hooks;
  }

  get state(): EngineState {
    return { phase: this.#phase, durableLsn: this.#durable };
  }

  /** Runs until `signal` aborts (then shuts down cleanly and resolves) or a non-retryable error. */
  async run(signal: AbortSignal): Promise<void> {
    const config = this.#config;
    // A wrong resolver path is a config error, before any server is touched.
    this.#resolvers = await loadResolvers(config.conflicts);
    const sourceConnector = new BoundedConnector();
    const targetConnector = new BoundedConnector();
    this.#poolConnectors = [sourceConnector, targetConnector];
    const source = openPostgres(config.source.url, 'admin', { ...sourceConnector.options, max: 2, connect_timeout: 15, onnotice: () => {}, idle_timeout: 30 });
    // An NDJSON target has no database: its state is a file, and its leader lock is taken on the source.
    const side = config.target.kind === 'postgres'
      ? { kind: 'postgres', url: config.target.url, pool: openPostgres(config.target.url, 'admin', { ...targetConnector.options, max: 2, connect_timeout: 15, onnotice: () => {}, idle_timeout: 30 }) } as const
      : { kind: 'ndjson', target: config.target } as const;
    const target = side.kind === 'postgres' ? side.pool : undefined;
    this.#targetPool = target;
    this.#sourcePool = source;
    let sequences: { readonly loop: SequenceSyncLoop; readonly sync: SequenceSync } | undefined;
    const lastError: Pick<LastErrorStore, 'record' | 'clear'> = target ? new LastErrorStore(target, config.name) : { record: async () => {}, clear: async () => {} };
    let leader: LeaderLock | undefined;
    this.#quarantine = new QuarantineControl({ subscription: config.name, policy: config.apply.onDeterministicError, target, logger: this.#logger, onQuarantined: this.#hooks.onQuarantined });
    try {
      let prepared: Prepared;
      for (let attempt = 0; ; attempt++) {
        try {
          if (!leader) {
            if (target) refuseSourceIsTarget(await serverIdentity(source, 'source'), await serverIdentity(target, 'target'));
            // One leader per subscription: a second process waits here, before any copy, slot or file work.
            leader = side.kind === 'postgres'
              ? await LeaderLock.acquire(side.url, config.name, this.#logger, signal)
              : await LeaderLock.acquire(config.source.url, config.name, this.#logger, signal, 'source');
            if (!leader) return;
          }
          prepared = side.kind === 'postgres'
            ? await this.#prepare(source, side.pool, signal)
            : await prepareNdjson(config, side.target, source, this.#logger);
          break;
        } catch (error) {
          // Stopped during the initial copy: not a failure. Finished tables stay ready;
          // the next start re-copies only the unfinished ones.
          if (signal.aborted) {
            this.#logger.info('stopped during preparation or initial copy; the next start resumes with the unfinished tables');
            return;
          }
          const mapped = error instanceof PgtideError ? error : fromServerError(error, 'source');
          // A server that answered "not now" (starting, shutting down, too many connections, a
          // killed session, a lock or serialization conflict) is waited for; preparing again is
          // what a restart would do, and it redoes only unfinished tables. One that cannot be
          // reached at all on the first start is most often a wrong host or port: say so at once.
          const retry = mapped.retryable && mapped.sqlState !== undefined;
          await lastError.record(mapped, retry);
          if (!retry) throw error;
          const delay = retryDelayMs(attempt);
          this.#logger.warn({ code: mapped.code, sqlState: mapped.sqlState, detail: mapped.detail, attempt: attempt + 1, retryInMs: Math.round(delay) }, `preparing the subscription failed: ${mapped.message}; retrying`);
          await sleep(delay, undefined, { signal }).catch(() => {});
          if (signal.aborted) return;
        }
      }
      if (signal.aborted) return;
      this.#phase = 'streaming';
      sequences = this.#startSequenceSync(prepared.tables, signal);
      this.#hooks.onStreaming?.();
      let attempt = 0;
      while (!signal.aborted) {
        try {
          await leader.ensure();
          // Tables a replicated schema change sent back to init (ddl.rewriteVolatile: resync).
          if (prepared.state instanceof StateStore) await this.#copyPending(prepared.state, () => publishedTables(source, prepared.publications), prepared.slot, signal);
          await this.#streamOnce(prepared, signal, () => { attempt = 0; void lastError.clear(); });
        } catch (caught) {
          let error = caught;
          const decision = signal.aborted ? undefined : this.#quarantine.decide(error, this.#durable ?? ZERO_LSN);
          if (decision?.kind === 'retry') continue;
          if (decision?.kind === 'stop') {
            error = decision.error;
            await this.#quarantine.recordStop(error);
          }
          if (error instanceof FoldConflictError && !signal.aborted) {
            this.#exactUntil = maxLsn(this.#exactUntil, error.untilLsn);
            this.#logger.info({ untilLsn: formatLsn(error.untilLsn) }, error.message);
            if (error.table !== undefined && !this.#noFoldTables.has(error.table)) {
              this.#noFoldTables.add(error.table);
              this.#logger.info({ table: error.table }, `net-effect folding is off for ${error.table} until pgtide restarts: its unique constraints tie rows together (for example a unique swap), so folding its changes can break them`);
            }
            continue;
          }
          if (error instanceof ResolverReplayError && !signal.aborted) {
            this.#resolverModes.replayed(error, this.#logger);
            continue;
          }
          if (error instanceof UniqueConflictReplay && !signal.aborted) {
            this.#uniqueCheckTables.add(error.table);
            this.#logger.info({ table: error.table }, error.message);
            continue;
          }
          // Whether to retry was decided once, where the error was made (core/error-class.ts).
          const mapped = error instanceof PgtideError ? error : fromServerError(error, 'source');
          // Stopping, and the attempt failed in a way the next start would retry (a fold conflict
          // met while finishing the last batch, a connection lost meanwhile): what is committed is
          // consistent with the recorded position, so this is a clean stop, not a failure.
          if (signal.aborted && (mapped.retryable || error instanceof FoldConflictError)) {
            this.#logger.info({ code: mapped.code, sqlState: mapped.sqlState }, `stopped; the last attempt ended with: ${mapped.message}. The next start resumes from the recorded position.`);
            break;
          }
          if (signal.aborted) throw mapped;
          await lastError.record(mapped, mapped.retryable);
          if (!mapped.retryable) throw mapped;
          const delay = retryDelayMs(attempt);
          attempt++;
          this.#phase = 'reconnecting';
          this.#logger.warn({ code: mapped.code, sqlState: mapped.sqlState, detail: mapped.detail, attempt, retryInMs: Math.round(delay) }, `replication interrupted: ${mapped.message}; retrying`);
          await sleep(delay, undefined, { signal }).catch(() => {});
          this.#phase = 'streaming';
        }
      }
    } finally {
      if (sequences) {
        await settleWithin(sequences.loop.stop(), CLEANUP_MS * 2);
        await settleWithin(sequences.sync.close(), CLEANUP_MS * 2);
      }
      this.#phase = 'stopped';
      await settleWithin(leader?.release() ?? Promise.resolve(), CLEANUP_MS);
      await settleWithin(Promise.allSettled([source.end({ timeout: 2 }), target?.end({ timeout: 2 })]), CLEANUP_MS);
      sourceConnector.destroyAll();
      targetConnector.destroyAll();
    }
  }

  async #prepare(source: postgres.Sql, target: postgres.Sql, signal: AbortSignal): Promise<Prepared> {
    const config = this.#config;
    refuseSharedSequenceSync(config);
    await checkPrivileges(source, target, config);
    const info = await checkSource(source);
    await refuseLoopBack(source, target, new OriginMatcher(originPolicy(config.origins)), this.#logger);
    const store = new StateStore(target, config.name);
    await store.migrate();
    const publication = publicationName(config);
    const publications = publicationNames(config);
    const slot = slotName(config);
    const [targetDb] = await target.unsafe<{ oid: number }[]>(`SELECT oid::int AS oid FROM pg_database WHERE datname = current_database()`).catch((e: unknown) => { throw fromServerError(e, 'target'); });
    const [sourceDb] = await source.unsafe<{ name: string }[]>(`SELECT current_database() AS name`).catch((e: unknown) => { throw fromServerError(e, 'source'); });
    await retireLegacyOrigin(target, legacyOriginName(config), this.#logger);
    const tables = await ensurePublications(source, config, this.#logger);
    if (config.schema.bootstrap) await bootstrapSchema(source, target, tables, this.#logger);
    if (config.ddl.capture) {
      const installed = await installCapture(source, config, tables.map((t) => t.schema));
      this.#logger.info({ tables: installed.tables }, 'DDL capture installed on the source');
    }
    await this.#checkTargetTables(target, tables);
    await checkCommitTimestamps(target, config);
    this.#copyOrigin = originName(config, targetDb!.oid);
    await checkDeltaColumns(source, target, config.conflicts, tables);

    let subscription = await store.getSubscription();
    refuseOtherSource(subscription, info.systemId);
    if (!subscription) await store.createSubscription(slot, publication, info.systemId);
    await store.syncTableList(tables);
    subscription = await store.getSubscription();
    const guard = (identity: GuardContext['identity']): GuardContext => ({
      source, target, store, subscription: config.name, slot, sourceDatabase: sourceDb?.name ?? '', identity, logger: this.#logger,
    });

    let startLsn: Lsn;
    if (!subscription?.startLsn) {
      const repl = ReplicationConnection.open(config.source.url);
      try {
        const created = await createOwnSlot(guard(await repl.identifySystem()), repl, store, info.systemId, config.copy.enabled);
        startLsn = created.consistentPoint;
        if (created.snapshotName && this.#hooks.onSnapshot) await this.#hooks.onSnapshot({ name: created.snapshotName, consistentPoint: created.consistentPoint });
        await this.#copy(store, tables, created.snapshotName, created.consistentPoint, signal);
      } finally {
        await repl.close();
      }
    } else {
      const repl = ReplicationConnection.open(config.source.url);
      try {
        await guardSlot(guard(await repl.identifySystem()), (await store.progress())?.endLsn ?? ZERO_LSN);
      } finally {
        await repl.close();
      }
      startLsn = subscription.startLsn;
      await this.#copyPending(store, async () => tables, slot, signal);
    }
    return {
      state: store, startLsn, protocolVersion: protocolVersionFor(info.versionNum), publications, slot, tables, guard,
      heartbeat: new Heartbeat(source, config.heartbeatIntervalMs ?? config.statusIntervalMs, this.#logger),
      sink: { kind: 'postgres', url: postgresTargetUrl(config, 'applying to PostgreSQL'), originName: originName(config, targetDb!.oid), targetDatabaseOid: targetDb!.oid },
    };
  }

  /**
   * Sequences are not in the WAL stream, so they are polled: every interval,
   * one read of all source sequences and one forward-only setval on the target.
   */
  #startSequenceSync(tables: readonly PublishedTable[], signal: AbortSignal): { readonly loop: SequenceSyncLoop; readonly sync: SequenceSync } | undefined {
    const config = this.#config;
    if (!config.sequences.enabled) return undefined;
    const sync = new SequenceSync({
      sourceUrl: config.source.url,
      targetUrl: postgresTargetUrl(config, 'sequence sync'),
      subscription: config.name,
      tables: tables.map((t) => ({ schema: t.schema, name: t.name })),
      include: config.sequences.include,
      ahead: config.sequences.ahead,
    });
    const problems = sequenceProblemLog((message) => this.#logger.warn(message));
    const loop = startSequenceSyncLoop({
      sync,
      intervalMs: config.sequences.intervalMs,
      signal,
      onReport: (report) => {
        this.#hooks.onSequenceReport?.(report);
        problems.report(report);
      },
      onError: (error) => problems.error(error),
    });
    return { loop, sync };
  }

  async #checkTargetTables(target: postgres.Sql, tables: readonly PublishedTable[]): Promise<void> {
    if (tables.length === 0) return;
    const names = tables.map((t) => qualify(t.schema, t.name));
    const rows = await target.unsafe<{ name: string }[]>(`SELECT n AS name FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NULL`, [textArrayLiteral(names)])
      .catch((e: unknown) => { throw fromServerError(e, 'target'); });
    if (rows.length > 0) {
      throw tableMissingOnTarget(rows.map((r) => r.name));
    }
  }

  /**
   * Re-copies unfinished (or newly published, or sent back by a schema change) tables from a
   * fresh snapshot; their sync LSN is that snapshot's point, so the stream skips what the copy
   * already holds.
   */
  async #copyPending(store: StateStore, published: () => Promise<readonly PublishedTable[]>, slot: string, signal: AbortSignal): Promise<void> {
    const pending = (await store.tableStates()).filter((t) => t.state !== 'ready');
    if (pending.length === 0) return;
    // Read now: a schema change since the start changed the columns the publications publish.
    const tables = await published();
    const repl = ReplicationConnection.open(this.#config.source.url);
    try {
      const created = await repl.createSlot(`${slot}_sync_${process.pid}`, { temporary: true, exportSnapshot: this.#config.copy.enabled });
      await this.#copy(store, tables, created.snapshotName, created.consistentPoint, signal);
    } finally {
      await repl.close();
      if (this.#phase === 'copying') this.#phase = 'streaming';
    }
  }

  async #copy(store: StateStore, published: readonly PublishedTable[], snapshotName: string | undefined, syncLsn: Lsn, signal: AbortSignal): Promise<void> {
    const pending = (await store.tableStates()).filter((t) => t.state !== 'ready');
    if (pending.length === 0) return;
    if (!snapshotName) {
      // copy disabled: the target is assumed to hold the data as of the slot's creation.
      for (const t of pending) await store.setTableState(t.schema, t.name, 'ready', syncLsn);
      return;
    }
    this.#phase = 'copying';
    const tag = this.#config.sourceTag;
    const specs = pending.map((t) => ({ ...copySpec(t, published), ...(tag ? { constants: [{ column: tag.column, value: tag.value }] } : {}) }));
    this.#logger.info({ tables: specs.length, parallelism: this.#config.copy.parallelism }, 'initial copy started');
    const result = await copyTables({
      sourceUrl: this.#config.source.url,
      targetUrl: postgresTargetUrl(this.#config, 'the initial copy'),
      snapshotName,
      tables: specs,
      parallelism: this.#config.copy.parallelism,
      splitThresholdBytes: this.#config.copy.splitThresholdBytes,
      rebuildIndexes: this.#config.copy.rebuildIndexes,
      truncateFirst: this.#config.copy.truncateFirst,
      ...(this.#copyOrigin !== undefined ? { originName: this.#copyOrigin } : {}),
      onIndexBuild: (t, index) => this.#logger.info({ table: qualify(t.schema, t.name), index }, 'building an index dropped for the copy'),
      onTableStart: (t) => store.setTableState(t.schema, t.name, 'copying', undefined),
      onClaimRows: (db, t) => store.claimCopiedRows(t.schema, t.name, db),
      recordReady: (db, t, rows) => store.setTableState(t.schema, t.name, 'ready', syncLsn, rows, db),
      ...(this.#hooks.onCopyProgress ? { onProgress: this.#hooks.onCopyProgress } : {}),
      signal,
    });
    this.#hooks.onCopyDone?.();
    this.#logger.info({ rows: result.rows, bytes: result.bytes, seconds: Number(result.seconds.toFixed(2)) }, 'initial copy finished');
  }

  async #streamOnce(prepared: Prepared, signal: AbortSignal, onProgress: () => void): Promise<void> {
    const config = this.#config;
    const watchdog = new StallWatchdog(config.stallTimeoutMs);
    this.#attemptApplyPids.clear();
    try {
      if (this.#abandonedApplyPids.length > 0 && this.#targetPool) {
        const ended = await watchdog.guard(terminateAbandonedApplySessions(this.#targetPool, this.#abandonedApplyPids), 'ending abandoned apply sessions on the target');
        this.#logger.info({ pids: this.#abandonedApplyPids, ended }, 'ended the apply session(s) abandoned by the watchdog, which may still hold the replication origin');
        this.#abandonedApplyPids = [];
      }
      await this.#streamGuarded(prepared, signal, onProgress, watchdog);
    } finally {
      watchdog.stop();
      if (watchdog.error) {
        this.#abandonedApplyPids.push(...this.#attemptApplyPids);
        // The pools may hold sockets as dead as the ones that stalled: drop them, so the next
        // attempt's queries connect afresh instead of queueing behind a query that never ends.
        for (const connector of this.#poolConnectors) connector.resetAll();
      }
    }
  }

  async #streamGuarded(prepared: Prepared, signal: AbortSignal, onProgress: () => void, watchdog: StallWatchdog): Promise<void> {
    const config = this.#config;
    const gateMap = await watchdog.guard(prepared.state.gateMap(), 'reading the table states on the target');
    // DDL messages (docs/ddl.md) are applied by the PostgreSQL sink: a stage between the gate and
    // each writer, the main one and those of streamed transactions.
    let durable = (): Lsn => ZERO_LSN;
    const deferredIndexes = prepared.sink.kind === 'postgres'
      ? new DeferredIndexBuilder({ url: prepared.sink.url, subscription: config.name, durableLsn: () => durable(), logger: this.#logger })
      : undefined;
    // A table sent back to init by a schema change (ddl.rewriteVolatile: resync) is copied between
    // attempts: this one ends once the target's table_state shows it committed. Read from the
    // target rather than judged by LSN: inside a transaction applied while it streams, the
    // change's commit LSN is not known yet, and that transaction may still roll back.
    const attemptEnd = new AbortController();
    const endAttempt = (): void => attemptEnd.abort();
    const store = prepared.state instanceof StateStore ? prepared.state : undefined;
    let recopyRequested = false;
    let recopyCheck: Promise<void> | undefined;
    const checkRecopy = (): void => {
      if (!recopyRequested || recopyCheck || !store) return;
      recopyCheck = store.tableStates().then((states) => {
        if (!states.some((t) => t.state !== 'ready')) return;
        this.#logger.info('ending this streaming attempt to copy the tables a schema change sent back to init');
        endAttempt();
      }, () => {}).finally(() => { recopyCheck = undefined; });
    };
    const ddlStage = deferredIndexes
      ? await watchdog.guard(ddlStages({ tables: gateMap, config, source: this.#sourcePool!, target: this.#targetPool!, deferredIndexes, logger: this.#logger,
        onRecopy: () => { recopyRequested = true; } }), 'reading the DDL state on the target')
      : undefined;
    const opening = this.#openSink(prepared, ddlStage);
    // A sink that opens after the watchdog gave up on it would keep the origin bound.
    opening.catch(() => {});
    const opened = await watchdog.guard(opening, 'opening the sink (the apply session on the target)').catch((error: unknown) => {
      void opening.then((late) => late.sink.close(), () => {});
      throw error;
    });
    const { sink } = opened;
    durable = () => sink.durableLsn;
    const repl = ReplicationConnection.open(config.source.url);
    try {
      // Builds left over from a crash (only ever recorded with capture on).
      if (config.ddl.capture) deferredIndexes?.kick();
      // Every attempt: the slot must not have moved past what the target holds.
      await guardSlot(prepared.guard(await repl.identifySystem()), sink.durableLsn);
      const startLsn = maxLsn(sink.durableLsn, prepared.startLsn);
      this.#durable = sink.durableLsn;
      const entry = await watchdog.guard(this.#quarantine!.entry(sink, opened.entry, sink.durableLsn), 'reading the stopped span on the target');
      const origins = new OriginMatcher(originPolicy(config.origins));
      let originFilter: ReturnType<typeof topologyStages>['originFilter'];
      signal.addEventListener('abort', endAttempt, { once: true });
      if (signal.aborted) endAttempt();
      await runAttempt({
        stages: (gate, direct) => {
          const stages = topologyStages(gate, direct, { origins, sourceTag: config.sourceTag });
          originFilter = stages.originFilter;
          return stages;
        },
        originNone: origins.serverFilters(prepared.protocolVersion),
        sink, entry, streamed: opened.streamed, tables: gateMap, replication: repl,
        slot: prepared.slot, publications: prepared.publications, protocolVersion: prepared.protocolVersion, startLsn,
        buffering: { memoryCap: config.memoryCap, spillDir: config.spillDir },
        statusIntervalMs: config.statusIntervalMs, receiveTimeoutMs: config.receiveTimeoutMs,
        persistAck: (lsn) => prepared.state.recordAck(lsn).catch((error: unknown) => {
          const mapped = fromServerError(error, 'target');
          this.#logger.warn({ code: mapped.code, sqlState: mapped.sqlState }, `could not record the acknowledged position on the target: ${mapped.message}; not acknowledging it yet`);
          throw mapped;
        }),
        activity: { idle: () => prepared.heartbeat.idle(), activity: () => { prepared.heartbeat.activity(); watchdog.activity(); } },
        guard: (work, what) => watchdog.guard(work, what),
        idleWaitMs: Math.max(5, config.apply.batchMaxAgeMs), signal: attemptEnd.signal,
        onStarted: () => this.#logger.info({ startLsn: formatLsn(startLsn), protocolVersion: prepared.protocolVersion, target: config.target.kind, origins: origins.policy.kind, originFilter: origins.passesAll ? 'off' : origins.serverFilters(prepared.protocolVersion) ? 'source' : 'pgtide' }, 'streaming started'),
        onDurable: (durableLsn, serverWalEnd) => {
          this.#durable = durableLsn;
          checkRecopy();
          onProgress();
          this.#hooks.onApplied?.({ durableLsn, serverWalEnd, transactions: opened.stats.transactions, changes: opened.stats.changes });
        },
      });
      this.#durable = sink.durableLsn;
      this.#logger.info({ appliedLsn: formatLsn(sink.durableLsn), ...opened.stats, ...(originFilter ? { droppedByOrigin: originFilter.droppedTransactions } : {}) }, 'streaming stopped');
    } finally {
      signal.removeEventListener('abort', endAttempt);
      await recopyCheck;
      await settleWithin(sink.close(), CLEANUP_MS * 3);
      await deferredIndexes?.close();
      await repl.close();
    }
  }

  /** The sink the config's target kind asks for, opened for one attempt; the pipeline does not know which. */
  async #openSink(prepared: Prepared, ddlStage?: (writer: ApplyWriter) => TransactionSink): Promise<OpenedSink> {
    const config = this.#config;
    if (prepared.sink.kind === 'ndjson') {
      const sink = await NdjsonSink.open({
        path: prepared.sink.path, state: prepared.sink.state,
        batchMaxTransactions: config.apply.batchMaxTransactions, batchMaxAgeMs: config.apply.batchMaxAgeMs,
        skipMessagePrefixes: [HEARTBEAT_PREFIX],
        onRecovery: (what, detail) => this.#logger.warn(detail, `NDJSON output: ${what}`),
      });
      return { sink, streamed: undefined, stats: sink.stats };
    }
    const { targetDatabaseOid } = prepared.sink;
    return openPostgresSink({
      writer: {
        url: prepared.sink.url,
        subscription: config.name,
        originName: prepared.sink.originName,
        batchMaxTransactions: config.apply.batchMaxTransactions,
        batchMaxChanges: config.apply.batchMaxChanges,
        batchMaxAgeMs: config.apply.batchMaxAgeMs,
        netEffect: config.apply.netEffect,
        copyMinRows: config.apply.copyMinRows,
        exactUntil: this.#exactUntil,
        noFoldTables: this.#noFoldTables,
        uniqueCheckTables: this.#uniqueCheckTables,
        addMissingColumns: config.ddl.addMissingColumns,
        conflicts: conflictSettings(config.conflicts, this.#resolvers),
        deltaColumns: deltaColumnSettings(config.conflicts),
        onConflicts: this.#hooks.onConflicts,
        resolverModes: this.#resolverModes,
        logger: this.#logger,
      },
      ...(ddlStage ? { ddlStage } : {}),
      // A row is judged by its transaction's commit time, which a transaction applied while it streams lacks.
      streamedApply: config.apply.streamedApply && !judgesByTime(conflictSettings(config.conflicts)),
      streamedConnections: STREAMED_APPLY_CONNECTIONS,
      streamedOrigin: (slot) => streamedOriginName(config, targetDatabaseOid, slot),
      onSession: (pid) => this.#attemptApplyPids.add(pid),
    });
  }
}


/** What the copy of one table reads: the publications' row filter and column list, and whether a retry must empty it first. */
function copySpec(t: TableStateRow, published: readonly PublishedTable[]): CopyTableSpec {
  const p = published.find((x) => x.schema === t.schema && x.name === t.name);
  return {
    schema: t.schema,
    name: t.name,
    ...(p?.columns ? { columns: p.columns } : {}),
    ...(p?.rowFilter !== undefined ? { rowFilter: p.rowFilter } : {}),
    ...(t.copyOwnsRows ? { ownsRows: true } : {}),
  };
}
