/** What the initial copy is asked to do and what it reports. */
import type { Queryable } from '../pg/copy-in.js';
export interface CopyTableSpec {
  readonly schema: string;
  readonly name: string;
  /** Copy only these, in this order; default all non-generated columns of the source table. */
  readonly columns?: readonly string[];
  /** Copy only the rows for which this SQL condition over the source table's columns is true (a publication row filter). */
  readonly rowFilter?: string;
  /** The target's rows of this table were written by an interrupted copy: empty it before copying. */
  readonly ownsRows?: boolean;
  /** Target-only columns set to a fixed value in every copied row (a consolidating edge's source tag). */
  readonly constants?: readonly { readonly column: string; readonly value: string }[];
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
  /**
   * The edge's replication origin: rows are committed under it with the commit time
   * -infinity (copy-origin.ts). Unset: plain local transactions.
   */
  readonly originName?: string;
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
