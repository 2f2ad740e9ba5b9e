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
import postgres from 'postgres';
import { openPostgres, type SiteOptions } from '../pg/connect.js';
import net from 'node:net';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromServerError, PgtideError } from '../core/errors.js';
import { TEXT_FORMAT_SETTINGS } from '../protocol/text-format.js';
import { copyIn, type Queryable } from '../pg/copy-in.js';
import { listNames, qualify, quoteIdent } from '../core/sql.js';
import { tableMissingOnTarget } from '../core/missing-table.js';
import { deferred, type Deferred } from '../core/async.js';

export interface CopyTableSpec {
  readonly schema: string;
  readonly name: string;
  /** Copy only these, in this order; default all non-generated columns of the source table. */
  readonly columns?: readonly string[];
  /** Copy only the rows for which this SQL condition over the source table's columns is true (a publication row filter). */
  readonly rowFilter?: string;
  /** The target's rows of this table were written by an interrupted copy: empty it before copying. */
  readonly ownsRows?: boolean;
}

export interface CopyProgress {
  /** `schema.name`, for display (not quoted). */
  readonly table: string;
  readonly rows: number;
  /** Bytes of COPY data streamed so far. */
  readonly bytes: number;
  /** From pg_class.reltuples; 0 when the source has no estimate (never analyzed). */
  readonly estimatedRows: number;
  /** On-disk size of the source table (pg_table_size: heap + TOAST); COPY text is usually somewhat larger. */
  readonly estimatedBytes: number;
  readonly done: boolean;
  /** Epoch milliseconds; 0 while the table waits for a worker. */
  readonly startedAt: number;
}

export type CopyFormat = 'text' | 'binary';

export interface CopyOptions {
  readonly sourceUrl: string;
  readonly targetUrl: string;
  /** Exported snapshot (CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT); every source transaction imports it. */
  readonly snapshotName: string;
  readonly tables: readonly CopyTableSpec[];
  /** Number of concurrent workers (each one source and one target connection); default 2. */
  readonly parallelism?: number;
  /** A table whose heap (pg_relation_size) is larger than this is copied in ctid ranges; default 256 MiB. */
  readonly splitThresholdBytes?: number;
  /**
   * COPY data format. 'auto' (default): binary for tables whose copied columns
   * have identical built-in types on two servers of the same major, else text.
   * 'binary' forces it (fails on any type difference); 'text' always works.
   */
  readonly format?: CopyFormat | 'auto';
  /**
   * Drop a table's plain secondary indexes before its COPY and build them
   * again after it, in the same target transaction (see SECONDARY_INDEXES).
   * Only for tables copied whole; default true.
   */
  readonly rebuildIndexes?: boolean;
  /** Empty every target table before copying into it; default false (rows only on the target are kept). */
  readonly truncateFirst?: boolean;
  /**
   * Called once every worker has imported the snapshot, before any data is
   * copied: from then on the replication connection that exported it may run
   * other commands (START_REPLICATION). Not awaited.
   */
  readonly onSnapshotsImported?: () => void;
  /** Before a table is emptied on the target: the caller marks it 'copying'. */
  readonly onTableStart?: (t: CopyTableSpec) => Promise<void>;
  /**
   * Marks the table 'ready'. For a table copied whole, `db` is the copy's own target
   * transaction, so the mark commits with the rows; for a table copied in ranges it runs
   * after the last range committed (a crash in between redoes the copy, see ownsRows).
   */
  readonly recordReady?: (db: Queryable, t: CopyTableSpec, rows: number) => Promise<void>;
  /** In the transaction that found an empty target table about to be copied in ranges: record that its rows are the copy's. */
  readonly onClaimRows?: (db: Queryable, t: CopyTableSpec) => Promise<void>;
  /** After the table's rows (and recordReady) are committed on the target. */
  readonly onTableDone?: (t: CopyTableSpec, rows: number) => Promise<void>;
  /** Every table, in copy order, at most every 200 ms and whenever a table starts or ends. */
  readonly onProgress?: (p: readonly CopyProgress[]) => void;
  /** A secondary index dropped for the copy is being built again (can take a while on a large table). */
  readonly onIndexBuild?: (t: CopyTableSpec, index: string) => void;
  readonly signal?: AbortSignal;
}

export interface CopyResult {
  readonly rows: number;
  readonly bytes: number;
  readonly seconds: number;
}

const DEFAULT_PARALLELISM = 2;
/** Config default too (control/config.ts reads it from here). */
export const DEFAULT_SPLIT_THRESHOLD = 256 * 1024 * 1024;
/** More ranges than this only add per-statement overhead. */
const MAX_RANGES_PER_TABLE = 256;
const PROGRESS_INTERVAL_MS = 200;
/** CopyData message size sent to the target: large enough that per-message costs vanish. */
const BATCH_BYTES = 64 * 1024;


/** A copy can run for hours: server-side timeouts configured for interactive users must not end it. */
function sessionSettings(serverVersion: number, role: 'source' | 'target'): Record<string, string> {
  const settings: Record<string, string> = {
    ...TEXT_FORMAT_SETTINGS,
    application_name: 'pgtide-copy',
    statement_timeout: '0',
    idle_in_transaction_session_timeout: '0',
    idle_session_timeout: '0',
  };
  if (serverVersion >= 170000) settings.transaction_timeout = '0';
  if (role === 'target') {
    // As PostgreSQL's table sync: no user triggers, no FK checks (the referenced
    // table may not be copied yet), no waiting for WAL flush on each commit.
    settings.session_replication_role = 'replica';
    settings.synchronous_commit = 'off';
  }
  return settings;
}

const CONNECT_TIMEOUT_S = 30;

/** What postgres.js passes to a `socket` factory (its parsed connection options). */
interface SocketTarget {
  readonly host: readonly string[];
  readonly port: readonly number[];
  readonly path?: string | false;
}

/**
 * A connected socket with TCP_NODELAY, as libpq always sets it. postgres.js
 * leaves Nagle's algorithm on, so the small CopyDone that ends each COPY FROM
 * waits for the ACK of the data before it, which the server delays: ~90 ms per
 * COPY on loopback, against ~18 ms with NODELAY (measured). Per table and per
 * range, that adds up. Only the first host of a multi-host URL is used.
 */
function noDelaySocket(target: SocketTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = target.path
      ? net.connect({ path: target.path })
      : net.connect({ host: target.host[0] ?? 'localhost', port: target.port[0] ?? 5432, noDelay: true });
    // postgres.js starts its own connect timer only once it has the socket.
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error(`connect timeout after ${CONNECT_TIMEOUT_S} s`), { code: 'CONNECT_TIMEOUT' })), CONNECT_TIMEOUT_S * 1000);
    const onError = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      // From here on postgres.js listens for errors itself.
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function connect(url: string, connection: Record<string, string>): postgres.Sql {
  const options = {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    connect_timeout: CONNECT_TIMEOUT_S,
    // The type lookup postgres.js runs on connect is an unobserved promise: cut
    // short by #fail it becomes an unhandled rejection. Arrays travel as JSON here.
    fetch_types: false,
    onnotice: () => {},
    connection,
    // A documented option (README, "Custom socket") missing from the typings.
    socket: noDelaySocket,
  };
  return openPostgres(url, 'copy', options as SiteOptions);
}

// ---------------------------------------------------------------------------
// COPY streams over postgres.js, with workarounds for two bugs of 3.4.x.

/**
 * `COPY … TO STDOUT`. When postgres.js pauses the socket for backpressure and
 * CopyDone arrives in the same network chunk, the stream ends while the socket
 * stays paused, so the next query on the connection never gets its answer
 * (porsager/postgres#499). The stream's read() only resumes the socket, so
 * calling it once more after 'end' is the fix.
 */
async function copyOut(sql: Queryable, statement: string): Promise<Readable> {
  const stream = await sql.unsafe(statement).readable();
  stream.once('end', () => {
    try {
      (stream as unknown as { _read(size: number): void })._read(0);
    } catch { /* the connection is already gone; the next query reports it */ }
  });
  return stream;
}

// ---------------------------------------------------------------------------

type Side = 'source' | 'target';

interface SourceMeta {
  readonly ord: number;
  readonly relkind: string | null;
  readonly est_rows: number | null;
  readonly est_bytes: number | null;
  readonly main_bytes: number | null;
  readonly copy_columns: string[] | null;
  readonly all_columns: string[] | null;
  /** Column name → type OID. */
  readonly types: Record<string, number> | null;
}

interface TargetMeta {
  readonly ord: number;
  readonly relkind: string | null;
  readonly referenced: boolean | null;
  readonly columns: string[] | null;
  readonly generated_columns: string[] | null;
  readonly types: Record<string, number> | null;
}

interface BlockRange { readonly from: number; readonly to: number | undefined }

class TableJob {
  readonly spec: CopyTableSpec;
  readonly display: string;
  readonly qualified: string;
  readonly columns: readonly string[];
  readonly sourceKind: string;
  readonly targetKind: string;
  /** Target referenced by a foreign key of another table: TRUNCATE would fail. */
  readonly referenced: boolean;
  readonly rowFilter: string | undefined;
  /** Some copied column is generated on the source: `COPY table (…) TO` refuses it, a query does not. */
  readonly readsGenerated: boolean;
  /** Empty the target table before copying (truncateFirst, or rows left by an interrupted copy). */
  readonly truncate: boolean;
  readonly estimatedRows: number;
  readonly estimatedBytes: number;
  readonly heapBytes: number;
  readonly format: CopyFormat;
  ranges: readonly BlockRange[] = [];
  rows = 0;
  bytes = 0;
  startedAt = 0;
  done = false;
  remaining = 0;
  /** For split tables: onTableStart + emptying the target, shared by all ranges. */
  prepared: Promise<void> | undefined;

  constructor(spec: CopyTableSpec, columns: readonly string[], source: SourceMeta, target: TargetMeta, format: CopyFormat, truncateFirst: boolean) {
    this.spec = spec;
    this.display = `${spec.schema}.${spec.name}`;
    this.qualified = qualify(spec.schema, spec.name);
    this.columns = columns;
    this.sourceKind = source.relkind ?? 'r';
    this.targetKind = target.relkind ?? 'r';
    this.referenced = target.referenced === true;
    this.rowFilter = spec.rowFilter;
    const plain = new Set(source.copy_columns ?? []);
    this.readsGenerated = columns.some((column) => !plain.has(column));
    this.truncate = truncateFirst || spec.ownsRows === true;
    this.estimatedRows = Math.max(0, source.est_rows ?? 0);
    this.estimatedBytes = source.est_bytes ?? 0;
    this.heapBytes = source.main_bytes ?? 0;
    this.format = format;
  }

  get columnList(): string {
    return this.columns.map(quoteIdent).join(', ');
  }

  /** Empties the target table; for a whole table in the same transaction as its COPY. */
  truncateSql(): string {
    const only = this.targetOnly;
    // TRUNCATE refuses a table that another table's foreign key references, even
    // with triggers off; DELETE does not check (the RI triggers do not fire
    // under session_replication_role = replica) and is cheap on the usually empty table.
    return this.referenced ? `DELETE FROM ${only}${this.qualified}` : `TRUNCATE ${only}${this.qualified}`;
  }

  /** `ONLY ` unless the target is partitioned (its rows are in its partitions). */
  get targetOnly(): string {
    return this.targetKind === 'p' ? '' : 'ONLY ';
  }

  copyOutSql(range: BlockRange | undefined): string {
    const withFormat = this.format === 'binary' ? ' WITH (FORMAT binary)' : '';
    const conditions: string[] = [];
    if (range) conditions.push(`ctid >= '(${range.from},0)'::tid`);
    if (range?.to !== undefined) conditions.push(`ctid < '(${range.to},0)'::tid`);
    if (this.rowFilter !== undefined) conditions.push(`(${this.rowFilter})`);
    // A partitioned table has no rows of its own: the query form reads its partitions
    // (and with publish_via_partition_root the root's filter applies to all of them).
    if (conditions.length > 0 || this.readsGenerated || this.sourceKind === 'p') {
      const where = conditions.length > 0 ? ` WHERE ${conditions.join(' AND ')}` : '';
      return `COPY (SELECT ${this.columnList} FROM ${this.sourceKind === 'p' ? '' : 'ONLY '}${this.qualified}${where}) TO STDOUT${withFormat}`;
    }
    // COPY table TO skips the executor and, unlike a query, never includes inheritance children.
    const list = this.columns.length > 0 ? ` (${this.columnList})` : '';
    return `COPY ${this.qualified}${list} TO STDOUT${withFormat}`;
  }

  copyInSql(): string {
    const list = this.columns.length > 0 ? ` (${this.columnList})` : '';
    return `COPY ${this.qualified}${list} FROM STDIN${this.format === 'binary' ? ' WITH (FORMAT binary)' : ''}`;
  }

  progress(): CopyProgress {
    return {
      table: this.display, rows: this.rows, bytes: this.bytes, estimatedRows: this.estimatedRows,
      estimatedBytes: this.estimatedBytes, done: this.done, startedAt: this.startedAt,
    };
  }
}

interface WorkItem { readonly job: TableJob; readonly range: BlockRange | undefined }

/** One worker's source transaction, holding the imported snapshot until close(). */
class SourceSession {
  readonly sql: postgres.Sql;
  readonly #tx: postgres.TransactionSql;
  readonly #release: Deferred<void>;
  readonly #finished: Promise<unknown>;

  private constructor(sql: postgres.Sql, tx: postgres.TransactionSql, release: Deferred<void>, finished: Promise<unknown>) {
    this.sql = sql;
    this.#tx = tx;
    this.#release = release;
    this.#finished = finished;
  }

  /** Resolves once the snapshot is imported; the transaction stays open until close(). */
  static async open(sql: postgres.Sql, snapshotName: string): Promise<SourceSession> {
    const ready = deferred<postgres.TransactionSql>();
    const release = deferred<void>();
    const finished = sql.begin('isolation level repeatable read read only', async (tx) => {
      // Must be the transaction's first statement.
      await tx.unsafe(`SET TRANSACTION SNAPSHOT '${snapshotName.replace(/'/g, "''")}'`);
      ready.resolve(tx);
      await release.promise;
    });
    finished.catch((error: unknown) => ready.reject(error));
    const tx = await ready.promise;
    return new SourceSession(sql, tx, release, finished);
  }

  get tx(): Queryable {
    return this.#tx;
  }

  /** Ends the (read-only) transaction; its snapshot is released. */
  async close(): Promise<void> {
    this.#release.resolve();
    await this.#finished;
  }
}

interface Worker {
  readonly source: SourceSession;
  readonly target: postgres.Sql;
}

function sqlStateOf(error: unknown): string | undefined {
  const code = (typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined);
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The login name in a connection URL, as an SQL role name for a GRANT. */
function roleOf(url: string | undefined): string {
  let name = '';
  try { name = url ? decodeURIComponent(new URL(url).username) : ''; } catch { /* not a URL */ }
  if (!name) return '<source user>';
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** Maps an error met while copying `job` (or, without a job, while setting up). */
function copyError(error: unknown, side: Side, job?: TableJob, sourceUrl?: string): PgtideError {
  if (error instanceof PgtideError) return error;
  const sqlState = sqlStateOf(error);
  if (job && side === 'source' && sqlState === '42501') {
    const base = fromServerError(error, side);
    return new PgtideError('PERMISSION_DENIED', `the source user may not read ${job.qualified} for the initial copy (${base.message.replace(/^permission denied on the source server: /, '').replace(/\. Grant the privilege.*$/, '')}). Run on the source: GRANT SELECT ON ${job.qualified} TO ${roleOf(sourceUrl)}; then start pgtide again (see docs/privileges.md).`, { sqlState, cause: error });
  }
  if (job && sqlState === '42P01') {
    if (side === 'target') return tableMissingOnTarget([job.qualified], error);
    return new PgtideError('TABLE_MISSING_ON_SOURCE', `table ${job.qualified} does not exist on the source (was it dropped during the copy?). Remove it from the publication or recreate it, then restart.`, { sqlState, cause: error });
  }
  if (job && sqlState === '23505') {
    const base = fromServerError(error, side);
    return new PgtideError('COPY_CONFLICT', `copying ${job.qualified}: ${base.message}. The initial copy keeps the rows already on the target (as CREATE SUBSCRIPTION does), and one of them has the key of a source row. Delete the conflicting rows on the target, or set copy.truncateFirst: true to empty the tables before copying.`, { sqlState, cause: error });
  }
  if (job && sqlState === '42703') {
    const base = fromServerError(error, side);
    return new PgtideError('COLUMN_MISMATCH', `copying ${job.qualified}: ${base.message}. Make the ${side} table's columns match, or list the columns to copy for this table.`, { sqlState, cause: error });
  }
  const base = fromServerError(error, side);
  if (!job) return base;
  return new PgtideError(base.code, `copying ${job.qualified}: ${base.message}`, { sqlState: base.sqlState, retryable: base.retryable, cause: error });
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

function splitRanges(heapBytes: number, blockSize: number, threshold: number, parallelism: number): BlockRange[] {
  const blocks = Math.ceil(heapBytes / blockSize);
  // At least one range per worker, so a single big table keeps every worker busy.
  const count = Math.min(blocks, MAX_RANGES_PER_TABLE, Math.max(Math.ceil(heapBytes / threshold), parallelism));
  const per = Math.ceil(blocks / count);
  const ranges: BlockRange[] = [];
  for (let from = 0; from < blocks; from += per) {
    // The last range is open-ended: the heap may have grown since we measured it.
    ranges.push({ from, to: from + per >= blocks ? undefined : from + per });
  }
  return ranges;
}

class TableCopy {
  readonly #options: CopyOptions;
  readonly #format: CopyFormat | 'auto';
  readonly #parallelism: number;
  readonly #connections = new Set<postgres.Sql>();
  readonly #queue: WorkItem[] = [];
  #jobs: readonly TableJob[] = [];
  #failure: PgtideError | undefined;
  #lastProgress = 0;
  #sourceVersion = 0;
  #targetVersion = 0;

  constructor(options: CopyOptions) {
    this.#options = options;
    this.#format = options.format ?? 'auto';
    this.#parallelism = Math.max(1, Math.floor(options.parallelism ?? DEFAULT_PARALLELISM));
  }

  async run(): Promise<CopyResult> {
    const started = Date.now();
    const { signal } = this.#options;
    if (signal?.aborted) throw this.#abortError();
    const onAbort = () => this.#fail(this.#abortError());
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.#plan();
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
    const sql = connect(url, settings);
    this.#connections.add(sql);
    return sql;
  }

  async #closeAll(failed: boolean): Promise<void> {
    const all = [...this.#connections];
    this.#connections.clear();
    // After a failure nothing is worth waiting for: open transactions roll back on disconnect.
    await Promise.all(all.map((sql) => sql.end({ timeout: failed ? 0 : 5 }).catch(() => {})));
  }

  /** Reads both catalogs and checks every table before anything is touched on the target. */
  async #plan(): Promise<void> {
    const { tables } = this.#options;
    if (tables.length === 0) return;
    const seen = new Set<string>();
    for (const spec of tables) {
      const qualified = qualify(spec.schema, spec.name);
      // Two jobs on one table would empty it under each other's feet.
      if (seen.has(qualified)) throw new PgtideError('CONFIG_INVALID', `table ${qualified} is listed twice for the initial copy.`);
      seen.add(qualified);
    }
    if (!/^[0-9A-Fa-f-]+$/.test(this.#options.snapshotName)) {
      throw new PgtideError('INTERNAL', `not an exported snapshot name: ${JSON.stringify(this.#options.snapshotName)}`);
    }
    const names = tables.map((t) => [t.schema, t.name]);
    const source = this.#connect(this.#options.sourceUrl, { application_name: 'pgtide-copy' });
    const target = this.#connect(this.#options.targetUrl, { application_name: 'pgtide-copy' });
    const [sourceRows, targetRows] = await Promise.all([
      this.#sourceMeta(source, names).catch((error: unknown) => { throw copyError(error, 'source'); }),
      this.#targetMeta(target, names).catch((error: unknown) => { throw copyError(error, 'target'); }),
    ]);
    this.#connections.delete(source);
    this.#connections.delete(target);
    await Promise.all([source.end({ timeout: 5 }), target.end({ timeout: 5 })]);

    const blockSize = sourceRows.blockSize;
    const missingSource: string[] = [];
    const missingTarget: string[] = [];
    const notTables: string[] = [];
    const problems: string[] = [];
    const jobs: TableJob[] = [];
    tables.forEach((spec, index) => {
      const qualified = qualify(spec.schema, spec.name);
      const s = sourceRows.rows[index];
      const t = targetRows[index];
      if (!s?.relkind) { missingSource.push(qualified); return; }
      if (!t?.relkind) { missingTarget.push(qualified); return; }
      if (s.relkind !== 'r' && s.relkind !== 'p') { notTables.push(`${qualified} on the source (relkind ${s.relkind})`); return; }
      if (t.relkind !== 'r' && t.relkind !== 'p') { notTables.push(`${qualified} on the target (relkind ${t.relkind})`); return; }
      const columns = spec.columns ?? s.copy_columns ?? [];
      const sourceColumns = new Set(s.all_columns ?? []);
      const targetColumns = new Set(t.columns ?? []);
      const targetGenerated = new Set(t.generated_columns ?? []);
      for (const column of columns) {
        if (!sourceColumns.has(column)) problems.push(`${qualified}: column ${quoteIdent(column)} does not exist on the source`);
        else if (!targetColumns.has(column)) problems.push(`${qualified}: column ${quoteIdent(column)} does not exist on the target`);
        else if (targetGenerated.has(column) && !(s.copy_columns ?? []).includes(column)) {
          // As PostgreSQL 18's own subscriber, which stops with "incompatible generated column".
          problems.push(`${qualified}: column ${quoteIdent(column)} is published as a generated column (publish_generated_columns = stored, or named in a column list) but is a generated column on the target too, which cannot be written; make it a plain column on the target or stop publishing it`);
        } else if (targetGenerated.has(column)) problems.push(`${qualified}: column ${quoteIdent(column)} is a generated column on the target and cannot be written`);
      }
      jobs.push(new TableJob(spec, columns, s, t, this.#formatFor(columns, s, t), this.#options.truncateFirst === true));
    });
    if (missingSource.length > 0) {
      throw new PgtideError('TABLE_MISSING_ON_SOURCE', `${listNames(missingSource)} ${missingSource.length === 1 ? 'does' : 'do'} not exist on the source. Check the schema and table names (they are case-sensitive) or remove them from the publication.`);
    }
    if (missingTarget.length > 0) throw tableMissingOnTarget(missingTarget);
    if (notTables.length > 0) {
      throw new PgtideError('UNSUPPORTED_OBJECT', `only tables can be copied, and these are not: ${listNames(notTables)}. Replace them with tables or leave them out.`);
    }
    if (problems.length > 0) {
      throw new PgtideError('COLUMN_MISMATCH', `${problems.slice(0, 10).join('; ')}${problems.length > 10 ? `; and ${problems.length - 10} more` : ''}. Make the target tables match the source (add the columns on the target, or list the columns to copy).`);
    }

    const threshold = this.#options.splitThresholdBytes ?? DEFAULT_SPLIT_THRESHOLD;
    const large = jobs.filter((job) => job.sourceKind === 'r' && job.heapBytes > threshold);
    const splittable = await this.#splittable(large);
    // Largest first: the long copies start early, small tables fill the gaps at the end.
    jobs.sort((a, b) => Math.max(b.heapBytes, b.estimatedBytes) - Math.max(a.heapBytes, a.estimatedBytes));
    for (const job of jobs) {
      if (splittable.has(job)) {
        job.ranges = splitRanges(job.heapBytes, blockSize, threshold, this.#parallelism);
        job.remaining = job.ranges.length;
        for (const range of job.ranges) this.#queue.push({ job, range });
      } else {
        job.remaining = 1;
        this.#queue.push({ job, range: undefined });
      }
    }
    this.#jobs = jobs;
  }

  /**
   * Ranges commit one by one, so a table keeps its target rows only when copied whole:
   * a large table is split only when it is emptied first or is empty on the target now
   * (checked again, under lock, before its first range; see #copyRange).
   */
  async #splittable(large: readonly TableJob[]): Promise<Set<TableJob>> {
    const split = new Set(large.filter((job) => job.truncate));
    const check = large.filter((job) => !job.truncate);
    if (check.length === 0) return split;
    const target = this.#connect(this.#options.targetUrl, { application_name: 'pgtide-copy' });
    try {
      for (const job of check) {
        if (await targetEmpty(target, job)) split.add(job);
      }
    } catch (error) {
      throw copyError(error, 'target');
    } finally {
      this.#connections.delete(target);
      await target.end({ timeout: 5 });
    }
    return split;
  }

  #formatFor(columns: readonly string[], source: SourceMeta, target: TargetMeta): CopyFormat {
    if (this.#format !== 'auto') return this.#format;
    if (Math.floor(this.#sourceVersion / 10000) !== Math.floor(this.#targetVersion / 10000)) return 'text';
    // Below FirstNormalObjectId: built-in, so the same OID means the same type on both servers.
    const builtIn = (oid: number | undefined) => oid !== undefined && oid < 16384;
    const same = columns.every((column) => builtIn(source.types?.[column]) && source.types?.[column] === target.types?.[column]);
    return same ? 'binary' : 'text';
  }

  async #sourceMeta(sql: postgres.Sql, names: string[][]): Promise<{ rows: SourceMeta[]; blockSize: number }> {
    const [settings] = await sql<{ block_size: number; version: number }[]>`
      select current_setting('block_size')::int as block_size, current_setting('server_version_num')::int as version`;
    this.#sourceVersion = settings?.version ?? 0;
    const rows = await sql<SourceMeta[]>`
      select s.ord::int as ord, c.relkind::text as relkind,
        (case when c.relkind = 'p'
          then (select coalesce(sum(greatest(p.reltuples, 0)), 0) from pg_partition_tree(c.oid) t join pg_class p on p.oid = t.relid where t.isleaf)
          else c.reltuples end)::float8 as est_rows,
        (case when c.relkind = 'p'
          then (select coalesce(sum(pg_table_size(t.relid)), 0) from pg_partition_tree(c.oid) t where t.isleaf)
          else pg_table_size(c.oid) end)::float8 as est_bytes,
        (case when c.relkind = 'r' then pg_relation_size(c.oid) else 0 end)::float8 as main_bytes,
        (select json_agg(a.attname order by a.attnum) from pg_attribute a
          where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = '') as copy_columns,
        (select json_agg(a.attname order by a.attnum) from pg_attribute a
          where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as all_columns,
        (select json_object_agg(a.attname, a.atttypid::int8) from pg_attribute a
          where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as types
      from jsonb_array_elements(${sql.json(names)}) with ordinality as s(pair, ord)
      left join pg_namespace n on n.nspname = s.pair->>0
      left join pg_class c on c.relnamespace = n.oid and c.relname = s.pair->>1
      order by s.ord`;
    return { rows: [...rows], blockSize: settings?.block_size ?? 8192 };
  }

  async #targetMeta(sql: postgres.Sql, names: string[][]): Promise<TargetMeta[]> {
    const [settings] = await sql<{ version: number }[]>`select current_setting('server_version_num')::int as version`;
    this.#targetVersion = settings?.version ?? 0;
    const rows = await sql<TargetMeta[]>`
      select s.ord::int as ord, c.relkind::text as relkind,
        exists(select 1 from pg_constraint k where k.contype = 'f' and k.confrelid = c.oid and k.conrelid <> c.oid) as referenced,
        (select json_agg(a.attname) from pg_attribute a
          where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns,
        (select json_agg(a.attname) from pg_attribute a
          where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated <> '') as generated_columns,
        (select json_object_agg(a.attname, a.atttypid::int8) from pg_attribute a
          where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as types
      from jsonb_array_elements(${sql.json(names)}) with ordinality as s(pair, ord)
      left join pg_namespace n on n.nspname = s.pair->>0
      left join pg_class c on c.relnamespace = n.oid and c.relname = s.pair->>1
      order by s.ord`;
    return [...rows];
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
    await worker.target.begin(async (tx) => {
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
    await this.#stream(worker.source.tx, worker.target, job, range);
    if (--job.remaining === 0) {
      await this.#hook('recordReady', job, () => this.#options.recordReady?.(worker.target, job.spec, job.rows));
      await this.#finish(job);
    }
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
 * Secondary indexes that may be dropped for a copy and built again after it.
 * Maintaining an index row by row during COPY is much slower than one sorted
 * build afterwards: 1.5 M rows with a primary key and three secondary
 * indexes took 23.7 s with the indexes in place and 6.9 s dropped and
 * rebuilt (bench/experiments/index-rebuild.ts, this 2-core machine).
 * The drop, the copy and the rebuilds share the copy's transaction, so a
 * failure or a crash leaves the indexes as they were.
 *
 * Left in place, so nothing about them can be lost: the primary key and
 * indexes behind constraints, unique indexes (a foreign key may use one),
 * the replica identity index, the CLUSTER index, invalid indexes, indexes in
 * a non-default tablespace or with a comment, partitioned indexes (whose
 * definition reads ON ONLY) and indexes of partitions (attached to their
 * parent's index).
 */
const SECONDARY_INDEXES = `
  SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE i.indrelid = to_regclass($1)
     AND NOT i.indisprimary AND NOT i.indisunique AND NOT i.indisexclusion
     AND NOT i.indisreplident AND NOT i.indisclustered AND i.indisvalid
     AND c.relkind = 'i' AND c.reltablespace = 0
     AND obj_description(i.indexrelid, 'pg_class') IS NULL
     AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
     AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = i.indexrelid AND d.refclassid = 'pg_class'::regclass AND d.deptype <> 'a')
   ORDER BY c.relname`;

interface SecondaryIndex { readonly name: string; readonly definition: string }

async function targetEmpty(db: Queryable, job: TableJob): Promise<boolean> {
  const [row] = await db.unsafe<{ empty: boolean }[]>(`SELECT NOT EXISTS (SELECT 1 FROM ${job.targetOnly}${job.qualified}) AS empty`);
  return row?.empty === true;
}

async function dropSecondaryIndexes(tx: Queryable, job: TableJob): Promise<readonly SecondaryIndex[]> {
  try {
    const indexes = await tx.unsafe<SecondaryIndex[]>(SECONDARY_INDEXES, [job.qualified]);
    for (const index of indexes) await tx.unsafe(`DROP INDEX ${index.name}`);
    return indexes;
  } catch (error) {
    throw copyError(error, 'target', job);
  }
}

/**
 * Copies `tables` as of `snapshotName` from source to target. Rejects with a
 * PgtideError; every connection it opened is closed when it settles.
 */
export async function copyTables(options: CopyOptions): Promise<CopyResult> {
  return new TableCopy(options).run();
}
