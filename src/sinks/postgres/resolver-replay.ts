/**
 * When an optimistic resolver probe (resolver-apply.ts) found conflicts after
 * later statements of its batch had gone out, the batch cannot be resolved in
 * place: the guard in front of its COMMIT fails it on the server, the writer
 * raises ResolverReplayError, and the engine replays from the applied position
 * (as after a fold conflict). Nothing of the rolled-back batch is acknowledged:
 * the error is the batch's failure, so its end LSN never becomes durable.
 *
 * ResolverModes keeps, for the process's life, which tables are applied
 * awaited (the probe holds the pipeline until the resolver decided): up to the
 * replayed batch's last commit after a table's first replay, and for good after
 * its second, since a table whose conflicts keep arriving would otherwise pay a
 * reconnect and a replay for each (said once in the log).
 */
import type { Logger } from 'pino';
import { formatLsn, type Lsn } from '../../core/lsn.js';
import { PgtideError } from '../../core/errors.js';
import type { BatchMark } from './apply-failure.js';

export class ResolverReplayError extends PgtideError {
  /** The target table whose probe found the conflicts (qualified, quoted). */
  readonly table: string;
  readonly #mark: BatchMark;
  constructor(table: string, mark: BatchMark) {
    super('APPLY_FAILED', `the optimistic probe of ${table} found conflicts after later statements of its batch were sent; the batch rolls back and is replayed with ${table} awaited (its custom resolver decides before anything else is sent)`, { retryable: true });
    this.name = 'ResolverReplayError';
    this.table = table;
    this.#mark = mark;
  }

  /** The last commit LSN of the failed batch, read when the engine replays (the batch may still have grown after the probe). */
  get untilLsn(): Lsn { return this.#mark.maxCommitLsn; }
}

export class ResolverModes {
  readonly #until = new Map<string, Lsn>();
  readonly #always = new Set<string>();

  /** True: a run of `table` whose first source transaction commits at `commitLsn` is applied awaited. */
  awaited(table: string, commitLsn: Lsn): boolean {
    if (this.#always.has(table)) return true;
    const until = this.#until.get(table);
    return until !== undefined && commitLsn <= until;
  }

  /** The engine is about to replay after `error`. */
  replayed(error: ResolverReplayError, logger: Logger): void {
    const { table } = error;
    const until = error.untilLsn;
    logger.info({ table, untilLsn: formatLsn(until) }, error.message);
    if (this.#always.has(table)) return;
    const before = this.#until.get(table);
    if (before !== undefined) {
      this.#always.add(table);
      logger.info({ table }, `${table} is applied awaited until pgtide restarts: its conflicts made batches replay twice, and each replay costs a reconnect. Each run of ${table} now holds the pipeline for one round trip (see docs/conflicts.md, "Custom resolver").`);
      return;
    }
    this.#until.set(table, until);
  }
}

/**
 * For the writer of a large transaction applied while it streams: its runs go
 * out chunk by chunk, so holding the pipeline per run costs about a round trip
 * per chunk, while a replay would stream the whole transaction again.
 */
export const ALWAYS_AWAITED: Pick<ResolverModes, 'awaited'> = { awaited: () => true };
