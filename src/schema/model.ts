/**
 * The typed model of what the replicated tables need on the target: what the
 * catalog reader builds from one server and what the DDL generator and the
 * diff work on. Definitions are kept as the server prints them
 * (format_type, pg_get_expr, pg_get_constraintdef, pg_get_indexdef,
 * pg_get_partkeydef), read with an empty search_path so every name in them is
 * schema-qualified; the model never re-implements the server's deparsing.
 */
import { qualify, type QualifiedName } from '../core/sql.js';

/** A name as the key of an object within its kind: `"schema"."name"`. */
export function objectKey(name: QualifiedName): string {
  return qualify(name.schema, name.name);
}

export interface Collation extends QualifiedName {
  readonly provider: 'libc' | 'icu' | 'builtin';
  /** LC_COLLATE and LC_CTYPE (libc), or the ICU / builtin locale. */
  readonly collate: string | null;
  readonly ctype: string | null;
  readonly locale: string | null;
  readonly deterministic: boolean;
  /** ICU tailoring rules (PostgreSQL 16+). */
  readonly rules: string | null;
}

export interface CompositeAttribute {
  readonly name: string;
  readonly type: string;
  readonly collation: QualifiedName | null;
}

interface TypeBase extends QualifiedName {
  readonly comment: string | null;
  /** Keys (objectKey) of other user types in the model this one is built from. */
  readonly dependsOn: readonly string[];
}

export type UserType =
  | (TypeBase & { readonly kind: 'enum'; readonly labels: readonly string[] })
  | (TypeBase & {
    readonly kind: 'domain';
    readonly baseType: string;
    readonly notNull: boolean;
    readonly default: string | null;
    readonly collation: QualifiedName | null;
    readonly checks: readonly { readonly name: string; readonly definition: string }[];
  })
  | (TypeBase & { readonly kind: 'composite'; readonly attributes: readonly CompositeAttribute[] })
  | (TypeBase & {
    readonly kind: 'range';
    readonly subtype: string;
    /** Non-default operator class of the subtype, qualified and quoted. */
    readonly subtypeOpclass: string | null;
    readonly collation: QualifiedName | null;
    /** regproc text of the subtype difference function, or null. */
    readonly subtypeDiff: string | null;
    readonly multirange: QualifiedName | null;
  });

export interface SequenceOptions {
  readonly dataType: string;
  readonly start: string;
  readonly increment: string;
  readonly min: string;
  readonly max: string;
  readonly cache: string;
  readonly cycle: boolean;
}

export interface Sequence extends QualifiedName {
  readonly options: SequenceOptions;
  /** The column the sequence is OWNED BY (serial columns), or null. */
  readonly ownedBy: { readonly table: QualifiedName; readonly column: string } | null;
  readonly comment: string | null;
}

export interface Column {
  readonly name: string;
  /** format_type(atttypid, atttypmod). */
  readonly type: string;
  readonly notNull: boolean;
  /**
   * The name of the column's NOT NULL constraint: PostgreSQL 18 keeps NOT NULL as a
   * named pg_constraint row (contype n); null before 18, where NOT NULL has no name.
   */
  readonly notNullConstraint: string | null;
  /** pg_get_expr of the default; for a generated column, its expression. */
  readonly default: string | null;
  readonly identity: 'always' | 'by default' | null;
  /** Identity sequence: its name and options, for GENERATED … AS IDENTITY (SEQUENCE NAME …). */
  readonly identitySequence: (QualifiedName & { readonly options: SequenceOptions }) | null;
  readonly generated: 'stored' | 'virtual' | null;
  /** Only when it differs from the type's default collation. */
  readonly collation: QualifiedName | null;
  readonly comment: string | null;
}

export type ConstraintKind = 'primary key' | 'unique' | 'check' | 'foreign key' | 'exclusion';

export interface Constraint {
  readonly name: string;
  readonly kind: ConstraintKind;
  /** pg_get_constraintdef. */
  readonly definition: string;
  /** Foreign keys: the referenced table. */
  readonly references: QualifiedName | null;
  readonly comment: string | null;
}

export interface Index {
  readonly name: string;
  /** pg_get_indexdef: a complete CREATE INDEX statement. */
  readonly definition: string;
  readonly comment: string | null;
}

export interface Table extends QualifiedName {
  readonly partitioned: boolean;
  /** pg_get_partkeydef for a partitioned table. */
  readonly partitionKey: string | null;
  /** A partition: its parent and bound (`FOR VALUES …` or `DEFAULT`). */
  readonly partitionOf: { readonly parent: QualifiedName; readonly bound: string } | null;
  readonly columns: readonly Column[];
  /** Declared on this table (not inherited from a partitioned parent). */
  readonly constraints: readonly Constraint[];
  /** Indexes that back no constraint and are not partitions of a parent's index. */
  readonly indexes: readonly Index[];
  readonly replicaIdentity: 'default' | 'nothing' | 'full' | { readonly index: string };
  readonly comment: string | null;
}

export interface SchemaModel {
  readonly schemas: readonly string[];
  readonly collations: readonly Collation[];
  /** In dependency order: every type after the types it is built from. */
  readonly types: readonly UserType[];
  /** Sequences used by the tables (owned, or named in a default), not identity sequences. */
  readonly sequences: readonly Sequence[];
  /** Every partitioned parent before its partitions. */
  readonly tables: readonly Table[];
  /** Objects the model leaves out, with the reason (for the report). */
  readonly skipped: readonly string[];
}

/** Every type after those it is built from (depth first over dependsOn; the reader lists them by name). */
export function orderTypes(types: readonly UserType[]): UserType[] {
  const byKey = new Map(types.map((t) => [objectKey(t), t]));
  const out: UserType[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (t: UserType): void => {
    const key = objectKey(t);
    if (state.get(key) !== undefined) return;
    state.set(key, 'visiting');
    for (const dep of t.dependsOn) {
      const d = byKey.get(dep);
      if (d) visit(d);
    }
    state.set(key, 'done');
    out.push(t);
  };
  for (const t of types) visit(t);
  return out;
}
