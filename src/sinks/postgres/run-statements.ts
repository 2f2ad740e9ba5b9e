/**
 * The statements of one run (run-planner.ts), under its table's conflict
 * policy: the plain set-based statement, or the hooks' versions of it —
 * conflict detection and the conflict log (conflict-apply.ts), per-index
 * unique checks (unique-conflicts.ts), tombstones (tombstones.ts), COPY for
 * long insert runs. The apply writer sends what this chooses and keeps the
 * bookkeeping each kind of statement needs (RunOutput): this module holds no
 * connection and no batch state. A run the writer sends as a custom
 * resolver's probe (resolver-apply.ts) does not come here: the probe and its
 * follow-ups hold the pipeline, which is the writer's.
 *
 * The hooks only build text. The writer sends each statement as it is handed
 * out, so they run in this order in the batch's transaction: a unique check
 * ahead of the run it checks, the tombstones ahead of their DELETE.
 */
import { copyInsertStatement, deleteByKeyStatement, insertStatement, keyedUpdateStatements, type CopyStatement, type Statement } from './statements.js';
import type { TargetTable } from './table-catalog.js';
import type { StatementContext } from './apply-failure.js';
import type { ConflictApply } from './conflict-apply.js';
import { combineGuards } from './conflict-statements.js';
import type { UniqueChecks } from './unique-conflicts.js';
import type { Tombstones } from './tombstones.js';
import type { Run } from './run-planner.js';

/** How the writer sends each kind of statement a run produces. */
export interface RunOutput {
  /** A statement whose only outcome is success or failure. */
  send(statement: Statement, context: StatementContext): void;
  /** A statement that resolved conflicts: returns one (kind, resolution) row per conflict_log row it wrote. */
  sendLogged(statement: Statement, context: StatementContext): void;
  /** Must change `expectedRows` rows: fewer were missing on the target, more means duplicate keys there. */
  sendCounted(statement: Statement, expectedRows: number, table: TargetTable, operation: string, context: StatementContext): void;
  /** An insert run through COPY (ApplyWriterOptions.copyMinRows). */
  sendCopy(copy: CopyStatement, context: StatementContext): void;
}

export class RunStatements {
  readonly #conflicts: ConflictApply;
  readonly #unique: UniqueChecks;
  readonly #tombstones: Tombstones;
  /** Insert runs at least this long go through COPY (0: never). */
  readonly #copyMinRows: number;

  constructor(conflicts: ConflictApply, unique: UniqueChecks, tombstones: Tombstones, copyMinRows: number) {
    this.#conflicts = conflicts;
    this.#unique = unique;
    this.#tombstones = tombstones;
    this.#copyMinRows = copyMinRows;
  }

  /** Hands the run's statements to `out`, in the order they must run. */
  emit(run: Run, context: StatementContext, out: RunOutput): void {
    switch (run.kind) {
      case 'insert': {
        const before = this.#unique.beforeInsert(run.table, run.rows, run.sources, this.#conflicts.policy(run.table));
        if (before) out.sendLogged(before, context);
        const logged = this.#conflicts.insert(run.table, run.rows, run.sources);
        if (logged) out.sendLogged(logged, context);
        else if (this.#copyMinRows > 0 && run.rows.length >= this.#copyMinRows) out.sendCopy(copyInsertStatement(run.table, run.rows), context);
        else out.send(insertStatement(run.table, run.rows), context);
        break;
      }
      case 'update': {
        const policy = this.#conflicts.policy(run.table);
        const before = this.#unique.beforeUpdate(run.table, run.setColumns, run.rows, run.sources, policy);
        if (before) out.sendLogged(before, context);
        const guard = combineGuards(this.#unique.skipGuard(run.table, run.setColumns, run.rows, policy), this.#tombstones.guard(run.table, run.setColumns, run.rows, policy));
        const step = this.#conflicts.update(run.table, run.setColumns, run.rows, run.sources, guard);
        if (step?.logs) out.sendLogged(step.statement, context);
        else if (step) out.sendCounted(step.counted.statement, step.counted.expectedRows, run.table, 'UPDATE', context);
        else for (const c of keyedUpdateStatements(run.table, run.setColumns, run.rows)) out.sendCounted(c.statement, c.expectedRows, run.table, c.operation, context);
        break;
      }
      case 'delete': {
        const step = this.#conflicts.delete(run.table, run.keys, run.sources);
        const tombstones = this.#tombstones.record(run.table, run.keys, run.sources);
        if (tombstones) out.send(tombstones, context);
        if (step?.logs) out.sendLogged(step.statement, context);
        else if (step) out.sendCounted(step.counted.statement, step.counted.expectedRows, run.table, 'DELETE', context);
        else out.sendCounted(deleteByKeyStatement(run.table, run.keys), run.keys.length, run.table, 'DELETE', context);
        break;
      }
      case 'counted': {
        const step = run.full ? this.#conflicts.full(run.table, run.counted, run.full) : undefined;
        if (step?.logs) out.sendLogged(step.statement, context);
        else {
          const counted = step?.counted ?? run.counted;
          out.sendCounted(counted.statement, counted.expectedRows, run.table, counted.operation, context);
        }
        break;
      }
    }
  }
}
