/**
 * The initial table copy: every row a table holds in the slot's exported
 * snapshot is streamed from the source into the target with COPY.
 *
 * Each worker holds one source transaction (REPEATABLE READ, READ ONLY) that
 * imports the exported snapshot, so all workers — and the ranges of a split
 * table — read exactly the data as of the slot's consistent point; changes
 * after it arrive through the replication stream. All workers import the
 * snapshot before anything is copied (`onSnapshotsImported` fires then), because
 * the snapshot dies as soon as the exporting replication connection runs another
 * command.
 *
 * What is copied follows the publications, as PostgreSQL's table sync does
 * (tablesync.c, copy_table): only the published columns (`columns`) and only
 * the rows their row filters let through (`rowFilter`).
 *
 * Target side, per table: COPY FROM STDIN and `recordReady` in one transaction,
 * so a copy either commits with its table marked ready or leaves nothing behind,
 * and a retry never duplicates rows. Rows that exist only on the target are kept
 * (as CREATE SUBSCRIPTION keeps them) unless `truncateFirst` asks to empty the
 * table first (TRUNCATE, or DELETE, see truncateSql). A table larger than
 * `splitThresholdBytes` is cut into ctid ranges (TID range scans, PostgreSQL
 * 14+) that several workers copy in parallel, each range committing on its own;
 * so it is split only when its target is empty (or emptied first), and
 * `onClaimRows` records, in the transaction that found it empty, that its rows
 * belong to the copy: a retry (`ownsRows`) empties it again before copying.
 *
 * Format: binary COPY is faster (measured up to ~60 % end to end, never
 * slower: the target parses less), but it needs the very same column types on
 * both sides (int4 data cannot be read as int8), and a user-defined type may
 * have no binary I/O at all or one that changes with its extension's version.
 * So 'auto' (the default) uses binary for a table only when both servers run
 * the same major and every copied column has the same built-in type on both
 * sides, and text otherwise. Text tolerates type differences (int4 → int8,
 * varchar → text, other majors); for it both sides pin the settings that change
 * how values are written and read (DateStyle, IntervalStyle,
 * extra_float_digits, lc_monetary), as PostgreSQL's own table sync does.
 */
import type postgres from 'postgres';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromServerError, PgtideError } from '../core/errors.js';
import { copyIn, type Queryable } from '../pg/copy-in.js';
import { copyOut } from '../pg/copy-out.js';
import { copyConnection, sessionSettings } from '../pg/copy-session.js';
import type { CopyOptions, CopyResult } from './copy-options.js';
import type { BlockRange, Side, TableJob, WorkItem } from './table-job.js';
import { SourceSession } from './snapshot-session.js';
import { copyError, sqlStateOf } from './copy-errors.js';
import { planCopy } from './plan.js';
import { dropSecondaryIndexes, targetEmpty } from './index-rebuild.js';
import { CopyOrigin } from './copy-origin.js';

const DEFAULT_PARALLELISM = 2;
const PROGRESS_INTERVAL_MS = 200;
/** CopyData message size sent to the target: large enough that per-message costs vanish. */
const BATCH_BYTES = 64 * 1024;

interface Worker {
  readonly source: SourceSession;
  readonly target: postgres.Sql;
}

/** Rows in COPY text data: every row ends in exactly one newline (newlines inside values are escaped as \n). */
function countNewlines(chunk: Buffer): number {
  let count = 0;
  let at = chunk.indexOf(10);
  while (at !== -1) {
    count++;
    at = chunk.indexOf(10, at + 1);
  }
  return count;
}

class TableCopy {
  readonly #options: CopyOptions;
  readonly #parallelism: number;
  readonly #connections = new Set<postgres.Sql>();
  readonly #queue: WorkItem[] = [];
  #jobs: readonly TableJob[] = [];
  #failure: PgtideError | undefined;
  #lastProgress = 0;
  #sourceVersion = 0;
  #targetVersion = 0;
  readonly #origin: CopyOrigin | undefined;

  constructor(options: CopyOptions) {
    this.#options = options;
    this.#origin = options.originName !== undefined ? new CopyOrigin(options.originName) : undefined;
    this.#parallelism = Math.max(1, Math.floor(options.parallelism ?? DEFAULT_PARALLELISM));
  }

  async run(): Promise<CopyResult> {
    const started = Date.now();
    const { signal } = this.#options;
    if (signal?.aborted) throw this.#abortError();
    const onAbort = () => this.#fail(this.#abortError());
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const plan = await planCopy(this.#options, this.#parallelism, {
        open: (url) => this.#connect(url, { application_name: 'pgtide-copy' }),
        close: async (sql) => { this.#connections.delete(sql); await sql.end({ timeout: 5 }); },
      });
      this.#jobs = plan.jobs;
      this.#queue.push(...plan.queue);
      this.#sourceVersion = plan.sourceVersion;
      this.#targetVersion = plan.targetVersion;
      this.#check();
      const workers = await this.#openWorkers();
      this.#check();
      this.#options.onSnapshotsImported?.();
      this.#emitProgress(true);
      await Promise.all(workers.map((worker) => this.#work(worker).catch((error: unknown) => this.#fail(error))));
      this.#check();
      this.#emitProgress(true);
      const rows = this.#jobs.reduce((sum, job) => sum + job.rows, 0);
      const bytes = this.#jobs.reduce((sum, job) => sum + job.bytes, 0);
      return { rows, bytes, seconds: (Date.now() - started) / 1000 };
    } catch (error) {
      this.#fail(error);
      throw this.#failure ?? error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      await this.#closeAll(this.#failure !== undefined);
    }
  }

  #abortError(): PgtideError {
    return new PgtideError('SHUTDOWN', 'the initial copy was cancelled; tables not marked ready are copied again from the start next time.');
  }

  /** Records the first failure and cuts every connection, which ends the other workers' statements. */
  #fail(error: unknown): void {
    if (this.#failure) return;
    this.#failure = error instanceof PgtideError ? error : copyError(error, 'target');
    for (const sql of this.#connections) void sql.end({ timeout: 0 }).catch(() => {});
  }

  #check(): void {
    if (this.#failure) throw this.#failure;
  }

  #connect(url: string, settings: Record<string, string>): postgres.Sql {
    const sql = copyConnection(url, settings);
    this.#connections.add(sql);
    return sql;
  }

  async #closeAll(failed: boolean): Promise<void> {
    const all = [...this.#connections];
    this.#connections.clear();
    // After a failure nothing is worth waiting for: open transactions roll back on disconnect.
    await Promise.all(all.map((sql) => sql.end({ timeout: failed ? 0 : 5 }).catch(() => {})));
  }

  /** Opens every worker and imports the snapshot in each before returning. */
  async #openWorkers(): Promise<Worker[]> {
    const count = Math.min(this.#parallelism, this.#queue.length);
    const opened = await Promise.allSettled(Array.from({ length: count }, async (): Promise<Worker> => {
      const sourceSql = this.#connect(this.#options.sourceUrl, sessionSettings(this.#sourceVersion, 'source'));
      const target = this.#connect(this.#options.targetUrl, sessionSettings(this.#targetVersion, 'target'));
      const [source] = await Promise.all([
        SourceSession.open(sourceSql, this.#options.snapshotName).catch((error: unknown) => { throw this.#importError(error); }),
        // Connects now, so a refused target login fails before any copying starts.
        target`select 1`.catch((error: unknown) => { throw copyError(error, 'target'); }),
      ]);
      return { source, target };
    }));
    const workers: Worker[] = [];
    for (const result of opened) {
      if (result.status === 'fulfilled') workers.push(result.value);
      else this.#fail(result.reason);
    }
    this.#check();
    return workers;
  }

  #importError(error: unknown): PgtideError {
    // 42704: no such snapshot (any more); 22023: not a snapshot identifier at all.
    const sqlState = sqlStateOf(error);
    if (sqlState === '42704' || sqlState === '22023') {
      return new PgtideError('REPLICATION_STREAM_LOST', `the exported snapshot ${this.#options.snapshotName} cannot be imported: ${fromServerError(error, 'source').message}. A snapshot lives only while the replication connection that created the slot stays open and idle; restart the initial copy so that a new slot and snapshot are made.`, { sqlState, cause: error });
    }
    return copyError(error, 'source');
  }

  /** Never rejects: a failure is recorded by #fail, which also stops the other workers. */
  async #work(worker: Worker): Promise<void> {
    try {
      for (let item = this.#queue.shift(); item && !this.#failure; item = this.#queue.shift()) {
        if (item.range) await this.#copyRange(worker, item.job, item.range);
        else await this.#copyWhole(worker, item.job);
      }
      if (this.#failure) return;
      await worker.source.close();
      // Out of work: give the connections (and the snapshot's hold on the source's
      // xmin) back now rather than when the last worker ends.
      this.#connections.delete(worker.source.sql);
      this.#connections.delete(worker.target);
      await Promise.all([worker.source.sql.end({ timeout: 5 }), worker.target.end({ timeout: 5 })]);
    } catch (error) {
      this.#fail(error);
    }
  }

  async #hook(name: string, job: TableJob, call: () => Promise<void> | undefined): Promise<void> {
    try {
      await call();
    } catch (error) {
      if (error instanceof PgtideError) throw error;
      throw new PgtideError('INTERNAL', `${name} for ${job.qualified} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }

  async #start(job: TableJob): Promise<void> {
    await this.#hook('onTableStart', job, () => this.#options.onTableStart?.(job.spec));
    job.startedAt = Date.now();
    this.#emitProgress(true);
  }

  async #finish(job: TableJob): Promise<void> {
    job.done = true;
    await this.#hook('onTableDone', job, () => this.#options.onTableDone?.(job.spec, job.rows));
    this.#emitProgress(true);
  }

  async #copyWhole(worker: Worker, job: TableJob): Promise<void> {
    await this.#start(job);
    let rows = 0;
    await this.#rowsTransaction(worker.target, async (tx) => {
      if (job.truncate) await tx.unsafe(job.truncateSql()).catch((error: unknown) => { throw copyError(error, 'target', job); });
      // Indexes are dropped only for a table with no rows of its own: DROP INDEX locks out
      // readers of the local rows for the whole copy, and rebuilding a large table to add
      // a few rows would cost more than it saves.
      const rebuild = this.#options.rebuildIndexes !== false && (job.truncate || await targetEmpty(tx, job).catch((error: unknown) => { throw copyError(error, 'target', job); }));
      const indexes = rebuild ? await dropSecondaryIndexes(tx, job) : [];
      rows = await this.#stream(worker.source.tx, tx, job, undefined);
      for (const index of indexes) {
        this.#options.onIndexBuild?.(job.spec, index.name);
        await tx.unsafe(index.definition).catch((error: unknown) => { throw copyError(error, 'target', job); });
      }
      await this.#hook('recordReady', job, () => this.#options.recordReady?.(tx, job.spec, rows));
    });
    job.rows = rows;
    await this.#finish(job);
  }

  async #copyRange(worker: Worker, job: TableJob, range: BlockRange): Promise<void> {
    job.prepared ??= (async () => {
      await this.#start(job);
      await worker.target.begin(async (tx) => {
        if (job.truncate) {
          await tx.unsafe(job.truncateSql()).catch((error: unknown) => { throw copyError(error, 'target', job); });
        } else {
          // SHARE blocks writers until the claim commits, so the table cannot gain a row between the check and the claim.
          await tx.unsafe(`LOCK TABLE ${job.targetOnly}${job.qualified} IN SHARE MODE`).catch((error: unknown) => { throw copyError(error, 'target', job); });
          if (!(await targetEmpty(tx, job).catch((error: unknown) => { throw copyError(error, 'target', job); }))) {
            throw new PgtideError('COPY_CONFLICT', `rows were written to ${job.qualified} on the target while its initial copy was starting. Start pgtide again: the table will be copied in one transaction that keeps those rows.`, { retryable: true });
          }
        }
        await this.#hook('onClaimRows', job, () => this.#options.onClaimRows?.(tx, job.spec));
      });
    })();
    await job.prepared;
    // Each range commits on its own: the table is not 'ready' until all have.
    await this.#rowsTransaction(worker.target, (tx) => this.#stream(worker.source.tx, tx, job, range));
    if (--job.remaining === 0) {
      await this.#hook('recordReady', job, () => this.#options.recordReady?.(worker.target, job.spec, job.rows));
      await this.#finish(job);
    }
  }

  /** A target transaction that writes copied rows: committed under the edge's origin when there is one (copy-origin.ts). */
  async #rowsTransaction<T>(target: postgres.Sql, work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
    if (this.#origin) return this.#origin.transaction(target, work);
    return await target.begin(work) as T;
  }

  /** Streams one table or range; returns the row count the target reported. */
  async #stream(source: Queryable, target: Queryable, job: TableJob, range: BlockRange | undefined): Promise<number> {
    const format = job.format;
    const sink = await copyIn(target, job.copyInSql()).catch((error: unknown) => { throw copyError(error, 'target', job); });
    let reader: Readable;
    try {
      reader = await copyOut(source, job.copyOutSql(range));
    } catch (error) {
      // Destroying the sink aborts the target's COPY (CopyFail); its own 'error' event only
      // echoes the source's failure reported below, and unheard it would crash the process.
      sink.stream.on('error', () => {});
      sink.stream.destroy(new Error('the source failed'));
      throw copyError(error, 'source', job, this.#options.sourceUrl);
    }
    // Which side failed first decides the message; the pipeline passes the same error on to the other stream.
    const origin = new WeakMap<object, Side>();
    const tag = (side: Side) => (error: unknown) => {
      if (typeof error === 'object' && error !== null && !origin.has(error)) origin.set(error, side);
    };
    reader.once('error', tag('source'));
    sink.stream.once('error', tag('target'));

    let streamedRows = 0;
    // The server sends one CopyData message per row; passed on as they come,
    // each would become its own CopyData message and socket write on the target.
    // Batching them cuts pgtide's CPU per row (see BATCH_BYTES).
    let batch: Buffer[] = [];
    let batched = 0;
    const counter = new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        job.bytes += chunk.length;
        // Text: exact. Binary: the server sends each row as one CopyData message, so
        // chunks ≈ rows (plus header and trailer); good enough for a progress display.
        const rows = format === 'text' ? countNewlines(chunk) : 1;
        streamedRows += rows;
        job.rows += rows;
        this.#emitProgress(false);
        batch.push(chunk);
        batched += chunk.length;
        if (batched < BATCH_BYTES) { callback(); return; }
        const out = Buffer.concat(batch, batched);
        batch = [];
        batched = 0;
        callback(null, out);
      },
      flush: (callback) => {
        callback(null, batched > 0 ? Buffer.concat(batch, batched) : undefined);
      },
    });
    const piped = pipeline(reader, counter, sink.stream);
    piped.catch(() => {});
    try {
      const [, rows] = await Promise.all([piped, sink.completion]);
      // The command tag is exact; the newline count only served the progress display.
      job.rows += rows - streamedRows;
      return rows;
    } catch (error) {
      const side = typeof error === 'object' && error !== null ? origin.get(error) ?? 'target' : 'target';
      const mapped = copyError(error, side, job, this.#options.sourceUrl);
      // Stop everything now rather than after the transaction's ROLLBACK round trip.
      this.#fail(mapped);
      throw mapped;
    }
  }

  #emitProgress(force: boolean): void {
    const { onProgress } = this.#options;
    if (!onProgress) return;
    const now = Date.now();
    if (!force && now - this.#lastProgress < PROGRESS_INTERVAL_MS) return;
    this.#lastProgress = now;
    try {
      onProgress(this.#jobs.map((job) => job.progress()));
    } catch { /* a broken progress display must not fail the copy */ }
  }
}

/**
 * Copies `tables` as of `snapshotName` from source to target. Rejects with a
 * PgtideError; every connection it opened is closed when it settles.
 */
export async function copyTables(options: CopyOptions): Promise<CopyResult> {
  return new TableCopy(options).run();
}
