/**
 * The engine's lifecycle: prepare (checks, publication, state), initial copy,
 * then stream and apply until stopped, reconnecting with backoff on any
 * retryable failure. Each streaming attempt starts fresh from the position
 * recorded on the target, which is what makes a crash at any moment safe.
 */
import postgres from 'postgres';
import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { originName, publicationName, slotName, type PgtideConfig } from './config.js';
import { PgtideError, fromServerError } from './errors.js';
import { checkSource, createPublication, publicationExists, publishedTables, slotExists, type PublishedTable } from '../source/source-catalog.js';
import { ReplicationConnection, protocolVersionFor } from '../source/replication-connection.js';
import { ReplicationSession } from '../source/replication-session.js';
import { copyTables, type CopyProgress, type CopyTableSpec } from '../source/table-copy.js';
import { PgoutputDecoder } from '../protocol/pgoutput-decoder.js';
import { TransactionAssembler } from '../changes/transaction-assembler.js';
import { formatLsn, maxLsn, ZERO_LSN, type Lsn } from '../changes/lsn.js';
import { qualify } from '../changes/relation-cache.js';
import { ApplyWriter, FoldConflictError } from '../apply/apply-writer.js';
import { ChangeGate } from '../apply/change-gate.js';
import { DirectStreamedApply } from '../apply/streamed-apply.js';
import { StateStore } from '../target/state-store.js';
import { SequenceSync, summarizeSequenceReport, type SequenceSyncReport } from '../apply/sequence-sync.js';
import { startSequenceSyncLoop, type SequenceSyncLoop } from './sequence-sync-job.js';
import { BoundedConnector, CLEANUP_MS, settleWithin } from '../pg/bounded.js';
import { StallWatchdog } from './watchdog.js';
import { terminateAbandonedApplySessions } from '../target/stale-sessions.js';

export interface EngineHooks {
  readonly onCopyProgress?: (progress: readonly CopyProgress[]) => void;
  readonly onCopyDone?: () => void;
  /** After each committed batch: position and counts, for lag displays and metrics. */
  readonly onApplied?: (info: { readonly durableLsn: Lsn; readonly serverWalEnd: Lsn; readonly transactions: number; readonly changes: number }) => void;
  readonly onStreaming?: () => void;
  readonly onSequenceReport?: (report: SequenceSyncReport) => void;
}

export interface EngineState {
  readonly phase: 'starting' | 'copying' | 'streaming' | 'reconnecting' | 'stopped';
  readonly durableLsn: Lsn | undefined;
}

const MAX_BACKOFF_MS = 30_000;

export class Engine {
  readonly #config: PgtideConfig;
  readonly #logger: Logger;
  readonly #hooks: EngineHooks;
  #phase: EngineState['phase'] = 'starting';
  #durable: Lsn | undefined;
  /** After a fold conflict: apply in exact order up to here. */
  #exactUntil: Lsn = ZERO_LSN;
  /** Apply sessions abandoned by the watchdog, ended before the next attempt opens its own. */
  #abandonedApplyPids: number[] = [];
  /** Backend pids of the apply sessions (main and streamed) of the current attempt. */
  readonly #attemptApplyPids = new Set<number>();
  #targetPool: postgres.Sql | undefined;
  /** Sockets of the source and target pools, dropped when the watchdog fires. */
  #poolConnectors: readonly BoundedConnector[] = [];

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
    const sourceConnector = new BoundedConnector();
    const targetConnector = new BoundedConnector();
    this.#poolConnectors = [sourceConnector, targetConnector];
    const source = postgres(config.source.url, { ...sourceConnector.options, max: 2, connect_timeout: 15, onnotice: () => {}, idle_timeout: 30 } as postgres.Options<Record<string, postgres.PostgresType>>);
    const target = postgres(config.target.url, { ...targetConnector.options, max: 2, connect_timeout: 15, onnotice: () => {}, idle_timeout: 30 } as postgres.Options<Record<string, postgres.PostgresType>>);
    this.#targetPool = target;
    let sequences: { readonly loop: SequenceSyncLoop; readonly sync: SequenceSync } | undefined;
    try {
      let prepared: Prepared;
      try {
        prepared = await this.#prepare(source, target, signal);
      } catch (error) {
        // Stopped during the initial copy: not a failure. Finished tables stay ready;
        // the next start re-copies only the unfinished ones.
        if (signal.aborted) {
          this.#logger.info('stopped during preparation or initial copy; the next start resumes with the unfinished tables');
          return;
        }
        throw error;
      }
      if (signal.aborted) return;
      this.#phase = 'streaming';
      sequences = this.#startSequenceSync(prepared.tables, signal);
      this.#hooks.onStreaming?.();
      let attempt = 0;
      while (!signal.aborted) {
        try {
          await this.#streamOnce(prepared, signal, () => { attempt = 0; });
        } catch (error) {
          if (error instanceof FoldConflictError && !signal.aborted) {
            this.#exactUntil = maxLsn(this.#exactUntil, error.untilLsn);
            this.#logger.info({ untilLsn: formatLsn(error.untilLsn) }, error.message);
            continue;
          }
          const mapped = error instanceof PgtideError ? error : fromServerError(error, 'source');
          if (!mapped.retryable || signal.aborted) throw mapped;
          const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
          attempt++;
          this.#phase = 'reconnecting';
          this.#logger.warn({ code: mapped.code, sqlState: mapped.sqlState, attempt, retryInMs: Math.round(delay) }, `replication interrupted: ${mapped.message}; retrying`);
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
      await settleWithin(Promise.allSettled([source.end({ timeout: 2 }), target.end({ timeout: 2 })]), CLEANUP_MS);
      sourceConnector.destroyAll();
      targetConnector.destroyAll();
    }
  }

  async #prepare(source: postgres.Sql, target: postgres.Sql, signal: AbortSignal): Promise<Prepared> {
    const config = this.#config;
    const info = await checkSource(source);
    const store = new StateStore(target, config.name);
    await store.migrate();
    const publication = publicationName(config);
    const slot = slotName(config);
    if (!(await publicationExists(source, publication))) {
      if (config.publication) {
        throw new PgtideError('PUBLICATION_MISSING', `publication "${publication}" does not exist on the source. Create it there (CREATE PUBLICATION ${publication} FOR TABLE ...), or remove \`publication:\` from the config to let pgtide create one for \`tables:\`.`);
      }
      await createPublication(source, publication, config.tables);
      this.#logger.info({ publication }, 'created publication on the source');
    }
    const tables = await publishedTables(source, publication);
    if (tables.length === 0) this.#logger.warn({ publication }, 'the publication contains no tables; nothing will be replicated');
    await this.#checkTargetTables(target, tables);
    for (const t of tables) {
      if (t.replicaIdentity === 'nothing' || (t.replicaIdentity === 'default' && !t.hasKey)) {
        this.#logger.warn({ table: qualify(t.schema, t.name) }, 'table has no replica identity: the source will reject UPDATE and DELETE on it while it is published; give it a primary key or REPLICA IDENTITY FULL');
      }
    }

    let subscription = await store.getSubscription();
    if (subscription && subscription.sourceSystemId && subscription.sourceSystemId !== info.systemId) {
      throw new PgtideError('STATE_CORRUPT', `this target replicates subscription "${config.name}" from another source (system id ${subscription.sourceSystemId}, this source is ${info.systemId}). Use a different \`name:\` or run \`pgtide drop\` for the old one.`);
    }
    if (!subscription) await store.createSubscription(slot, publication, info.systemId);
    await store.syncTableList(tables);
    subscription = await store.getSubscription();
    const slotState = await slotExists(source, slot);

    let startLsn: Lsn;
    if (!subscription?.startLsn) {
      if (slotState.exists) {
        // Left by a first start that died before recording its start point: it is ours and unused.
        if (slotState.active) throw new PgtideError('SLOT_IN_USE', `replication slot "${slot}" is active on the source; another process uses it. Stop it or choose another slot name.`, { retryable: false });
        await source.unsafe(`SELECT pg_drop_replication_slot($1)`, [slot]);
      }
      const repl = ReplicationConnection.open(config.source.url);
      try {
        const identity = await repl.identifySystem();
        if (identity.systemId !== info.systemId) {
          throw new PgtideError('STATE_CORRUPT', `the replication connection reached a different server (system id ${identity.systemId}) than the SQL connection (${info.systemId}); check that source.url points at one server, not a pooler or load balancer.`);
        }
        const created = await repl.createSlot(slot, { temporary: false, exportSnapshot: config.copy.enabled });
        startLsn = created.consistentPoint;
        await store.setStartLsn(startLsn);
        this.#logger.info({ slot, consistentPoint: formatLsn(startLsn) }, 'created replication slot');
        await this.#copy(store, created.snapshotName, created.consistentPoint, signal);
      } finally {
        await repl.close();
      }
    } else {
      if (slotState.exists && slotState.plugin !== 'pgoutput') {
        throw new PgtideError('SLOT_IN_USE', `replication slot "${slot}" on the source uses plugin ${slotState.plugin ?? '(physical)'}, not pgoutput; it is not pgtide's. Set another \`slot:\` in the config.`);
      }
      if (!slotState.exists) {
        throw new PgtideError('SLOT_MISSING', `replication slot "${slot}" is gone from the source, so changes since the last run cannot be streamed. Run \`pgtide drop\` with this config and start again to re-copy.`);
      }
      startLsn = subscription.startLsn;
      const pending = (await store.tableStates()).filter((t) => t.state !== 'ready');
      if (pending.length > 0) {
        // Re-copy unfinished (or newly published) tables from a fresh snapshot; their sync LSN
        // is that snapshot's point, so the main stream skips what the copy already holds.
        const repl = ReplicationConnection.open(config.source.url);
        try {
          const created = await repl.createSlot(`${slot}_sync_${process.pid}`, { temporary: true, exportSnapshot: config.copy.enabled });
          await this.#copy(store, created.snapshotName, created.consistentPoint, signal);
        } finally {
          await repl.close();
        }
      }
    }
    return { store, startLsn, protocolVersion: protocolVersionFor(info.versionNum), publication, slot, tables };
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
      targetUrl: config.target.url,
      subscription: config.name,
      tables: tables.map((t) => ({ schema: t.schema, name: t.name })),
      include: config.sequences.include,
      ahead: config.sequences.ahead,
    });
    let warned = '';
    const loop = startSequenceSyncLoop({
      sync,
      intervalMs: config.sequences.intervalMs,
      signal,
      onReport: (report) => {
        this.#hooks.onSequenceReport?.(report);
        if (report.ok) { warned = ''; return; }
        const summary = summarizeSequenceReport(report);
        // The same problem every interval is logged once, not every few seconds.
        if (summary !== warned) this.#logger.warn(`sequence sync: ${summary}`);
        warned = summary;
      },
      onError: (error) => this.#logger.warn({ code: error.code }, `sequence sync failed: ${error.message}; retrying next interval`),
    });
    return { loop, sync };
  }

  async #checkTargetTables(target: postgres.Sql, tables: readonly PublishedTable[]): Promise<void> {
    if (tables.length === 0) return;
    const names = tables.map((t) => qualify(t.schema, t.name));
    const rows = await target.unsafe<{ name: string }[]>(`SELECT n AS name FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NULL`, [`{${names.map((n) => `"${n.replace(/["\\]/g, '\\$&')}"`).join(',')}}`])
      .catch((e: unknown) => { throw fromServerError(e, 'target'); });
    if (rows.length > 0) {
      throw new PgtideError('TABLE_MISSING_ON_TARGET', `table(s) ${rows.map((r) => r.name).join(', ')} are published on the source but do not exist on the target. Create them on the target first (for example: pg_dump --schema-only --table=... source | psql target), then start pgtide again.`);
    }
  }

  async #copy(store: StateStore, snapshotName: string | undefined, syncLsn: Lsn, signal: AbortSignal): Promise<void> {
    const pending = (await store.tableStates()).filter((t) => t.state !== 'ready');
    if (pending.length === 0) return;
    if (!snapshotName) {
      // copy disabled: the target is assumed to hold the data as of the slot's creation.
      for (const t of pending) await store.setTableState(t.schema, t.name, 'ready', syncLsn);
      return;
    }
    this.#phase = 'copying';
    const specs: CopyTableSpec[] = pending.map((t) => ({ schema: t.schema, name: t.name }));
    this.#logger.info({ tables: specs.length, parallelism: this.#config.copy.parallelism }, 'initial copy started');
    const result = await copyTables({
      sourceUrl: this.#config.source.url,
      targetUrl: this.#config.target.url,
      snapshotName,
      tables: specs,
      parallelism: this.#config.copy.parallelism,
      splitThresholdBytes: this.#config.copy.splitThresholdBytes,
      rebuildIndexes: this.#config.copy.rebuildIndexes,
      onIndexBuild: (t, index) => this.#logger.info({ table: qualify(t.schema, t.name), index }, 'building an index dropped for the copy'),
      onTableStart: (t) => store.setTableState(t.schema, t.name, 'copying', undefined),
      onTableDone: (t, rows) => store.setTableState(t.schema, t.name, 'ready', syncLsn, rows),
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
    const gateMap = await watchdog.guard(prepared.store.gateMap(), 'reading the table states on the target');
    const writerOptions = {
      url: config.target.url,
      subscription: config.name,
      originName: originName(config),
      batchMaxTransactions: config.apply.batchMaxTransactions,
      batchMaxChanges: config.apply.batchMaxChanges,
      batchMaxAgeMs: config.apply.batchMaxAgeMs,
      netEffect: config.apply.netEffect,
      copyMinRows: config.apply.copyMinRows,
      exactUntil: this.#exactUntil,
      logger: this.#logger,
    };
    const opening = ApplyWriter.open(writerOptions);
    // A writer that opens after the watchdog gave up on it would keep the origin bound.
    opening.catch(() => {});
    const writer = await watchdog.guard(opening, 'opening the apply session on the target').catch((error: unknown) => {
      void opening.then((late) => late.close(), () => {});
      throw error;
    });
    if (writer.backendPid !== undefined) this.#attemptApplyPids.add(writer.backendPid);
    const repl = ReplicationConnection.open(config.source.url);
    let session: ReplicationSession | undefined;
    let assembler: TransactionAssembler | undefined;
    try {
      const startLsn = maxLsn(writer.durableLsn, prepared.startLsn);
      this.#durable = writer.durableLsn;
      const gate = new ChangeGate(writer, gateMap, writer.durableLsn);
      let processing = false;
      const direct = config.apply.streamedApply
        ? new DirectStreamedApply({ main: writer, gate, maxOpen: 2, startLsn, openWriter: async () => {
          const streamed = await ApplyWriter.open({ ...writerOptions, holdsOrigin: false, netEffect: false });
          if (streamed.backendPid !== undefined) this.#attemptApplyPids.add(streamed.backendPid);
          return streamed;
        } })
        : undefined;
      const asm = new TransactionAssembler(gate, { memoryCap: config.memoryCap, spillDir: config.spillDir }, direct);
      assembler = asm;
      const decoder = new PgoutputDecoder({ protocolVersion: prepared.protocolVersion });
      const stream = await watchdog.guard(repl.startReplication({ slot: prepared.slot, startLsn, publication: prepared.publication, protocolVersion: prepared.protocolVersion, streaming: true }), 'START_REPLICATION on the source');
      const live = new ReplicationSession(stream, {
        statusIntervalMs: config.statusIntervalMs,
        receiveTimeoutMs: config.receiveTimeoutMs,
        // Quiescent also requires that no payload taken from the session is still unprocessed:
        // a keepalive arriving while the loop awaits a flush between two of them must not be
        // acknowledged past the ones not yet applied.
        ackState: () => ({ durableLsn: writer.durableLsn, quiescent: !processing && !asm.inFlight && !writer.hasPendingWork }),
      }, startLsn);
      session = live;
      this.#logger.info({ startLsn: formatLsn(startLsn), protocolVersion: prepared.protocolVersion }, 'streaming started');
      let lastDurable = writer.durableLsn;
      const idleWaitMs = Math.max(5, config.apply.batchMaxAgeMs);
      while (!signal.aborted) {
        const payloads = await live.next(idleWaitMs);
        if (payloads.length === 0) {
          // Idle: commit what is complete so latency stays low under light load.
          if (writer.hasPendingWork && writer.atBoundary) {
            await watchdog.guard(writer.commitPending(), 'a commit on the target');
          }
        } else {
          processing = true;
          watchdog.activity();
          for (const payload of payloads) {
            const waited = asm.push(decoder.decode(payload));
            if (waited) await watchdog.guard(waited, 'applying received changes to the target');
          }
          processing = false;
        }
        if (writer.durableLsn !== lastDurable) {
          lastDurable = writer.durableLsn;
          this.#durable = lastDurable;
          onProgress();
          this.#hooks.onApplied?.({ durableLsn: lastDurable, serverWalEnd: live.serverWalEnd, transactions: writer.stats.transactions, changes: writer.stats.changes });
        }
      }
      // Shutdown: finish the batch if it ends on a transaction boundary, else roll it back;
      // either way the recorded position matches what is committed.
      if (writer.hasPendingWork && writer.atBoundary && !asm.inFlight) {
        await watchdog.guard(writer.commitPending(), 'the last commit on the target');
      } else {
        await watchdog.guard(writer.rollback(), 'rolling back on the target');
      }
      this.#durable = writer.durableLsn;
      live.sendStatus();
      this.#logger.info({ appliedLsn: formatLsn(writer.durableLsn), ...writer.stats }, 'streaming stopped');
    } finally {
      // Each step within a time limit: a clean-up that hangs on a dead connection would stop
      // the reconnect for good (issue 10, case 6).
      await settleWithin(assembler?.reset() ?? Promise.resolve(), CLEANUP_MS * 3);
      await settleWithin(session?.close() ?? Promise.resolve(), CLEANUP_MS);
      await settleWithin(writer.close(), CLEANUP_MS * 3);
      await repl.close();
    }
  }
}

interface Prepared {
  readonly store: StateStore;
  readonly startLsn: Lsn;
  readonly protocolVersion: 1 | 2 | 3 | 4;
  readonly publication: string;
  readonly slot: string;
  readonly tables: readonly PublishedTable[];
}
