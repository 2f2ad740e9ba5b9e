/** One table of the initial copy: what is read, where it goes, and how far it got. */
import { qualify, quoteIdent } from '../core/sql.js';
import type { CopyFormat, CopyProgress, CopyTableSpec } from './copy-options.js';

export type Side = 'source' | 'target';

export interface SourceMeta {
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

export interface TargetMeta {
  readonly ord: number;
  readonly relkind: string | null;
  readonly referenced: boolean | null;
  readonly columns: string[] | null;
  readonly generated_columns: string[] | null;
  readonly types: Record<string, number> | null;
}

export interface BlockRange { readonly from: number; readonly to: number | undefined }

export class TableJob {
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
  /** Target-only columns with a fixed value, appended to every copied row (spec.constants). */
  readonly constants: readonly { readonly column: string; readonly value: string }[];
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
    this.constants = spec.constants ?? [];
    // A constant is a literal in the source query: text, which the target's COPY parses into the column's type.
    this.format = this.constants.length > 0 ? 'text' : format;
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
    if (conditions.length > 0 || this.readsGenerated || this.sourceKind === 'p' || this.constants.length > 0) {
      const where = conditions.length > 0 ? ` WHERE ${conditions.join(' AND ')}` : '';
      const constants = this.constants.map((c) => `, ${sqlLiteral(c.value)}::text`).join('');
      return `COPY (SELECT ${this.columnList}${constants} FROM ${this.sourceKind === 'p' ? '' : 'ONLY '}${this.qualified}${where}) TO STDOUT${withFormat}`;
    }
    // COPY table TO skips the executor and, unlike a query, never includes inheritance children.
    const list = this.columns.length > 0 ? ` (${this.columnList})` : '';
    return `COPY ${this.qualified}${list} TO STDOUT${withFormat}`;
  }

  copyInSql(): string {
    const names = [...this.columns, ...this.constants.map((c) => c.column)];
    const list = names.length > 0 ? ` (${names.map(quoteIdent).join(', ')})` : '';
    return `COPY ${this.qualified}${list} FROM STDIN${this.format === 'binary' ? ' WITH (FORMAT binary)' : ''}`;
  }

  progress(): CopyProgress {
    return {
      table: this.display, rows: this.rows, bytes: this.bytes, estimatedRows: this.estimatedRows,
      estimatedBytes: this.estimatedBytes, done: this.done, startedAt: this.startedAt,
    };
  }
}

/** A string constant in SQL (standard_conforming_strings, on since PostgreSQL 9.1). */
function sqlLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

export interface WorkItem { readonly job: TableJob; readonly range: BlockRange | undefined }
