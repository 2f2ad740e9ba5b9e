/**
 * The engine's side of quarantine (docs/quarantine.md): what a stop on a
 * deterministic apply error leaves for the next start, and what each
 * streaming attempt isolates and quarantines.
 *
 * - A stop records its batch's span (`pgtide.apply_stop`). `pgtide skip` marks
 *   it; the next start applies that span one source transaction per target
 *   transaction and quarantines the one that fails (or, with `--lsn`, the one
 *   named) and goes on.
 * - With `apply.onDeterministicError: quarantine` the engine does the same by
 *   itself, in the same process: a warning, a metric, and no stop.
 *
 * What must survive a crash lives on the target (the stop and its skip flag,
 * consumed in the quarantine's own transaction); what is only in memory here
 * (the span of an automatic isolation, the transaction found failing) is found
 * again by the next start, since the failing batch fails again.
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { formatLsn, maxLsn, ZERO_LSN, type Lsn } from '../core/lsn.js';
import { PgtideError } from '../core/errors.js';
import { clearApplyStop, readApplyStop, recordApplyStop } from '../state/quarantine-state.js';
import { IsolationFailure, IsolationStage, isDeterministicApplyError, type QuarantinedInfo, type QuarantineOrder } from '../sinks/postgres/isolation-stage.js';
import { stoppedSpanOf } from '../sinks/postgres/apply-stop.js';
import { ApplyWriter } from '../sinks/postgres/apply-writer.js';
import type { TransactionSink } from '../changes/change.js';

export type OnDeterministicError = 'stop' | 'quarantine';

export interface QuarantineControlOptions {
  readonly subscription: string;
  readonly policy: OnDeterministicError;
  readonly target: postgres.Sql | undefined;
  readonly logger: Logger;
  readonly onQuarantined?: ((info: QuarantinedInfo) => void) | undefined;
}

/** What the engine does with an attempt's failure. */
export type Decision = { readonly kind: 'retry' } | { readonly kind: 'stop'; readonly error: unknown } | { readonly kind: 'other' };

export class QuarantineControl {
  readonly #options: QuarantineControlOptions;
  /** Isolate up to here in this process (automatic quarantine). */
  #autoUntil: Lsn = ZERO_LSN;
  /** The stop's span when the user asked to skip (re-read at every attempt). */
  #skipUntil: Lsn = ZERO_LSN;
  /** `pgtide skip` without --lsn is on: the next failing isolated transaction may be quarantined. */
  #skipOpen = false;
  /** Transactions found failing, to be quarantined by the next attempt. */
  readonly #pending = new Map<Lsn, QuarantineOrder>();

  constructor(options: QuarantineControlOptions) {
    this.#options = options;
  }

  /**
   * Called once the attempt's sink is open: the stage in front of `entry`, or
   * undefined when nothing is to be isolated (the usual case: no extra work).
   */
  async entry(sink: unknown, entry: TransactionSink | undefined, durable: Lsn): Promise<TransactionSink | undefined> {
    if (!(sink instanceof ApplyWriter) || !this.#options.target) return entry;
    await this.#readStop(durable);
    const until = maxLsn(this.#autoUntil, this.#skipUntil);
    for (const lsn of this.#pending.keys()) if (lsn <= durable) this.#pending.delete(lsn);
    if (until <= durable && this.#pending.size === 0) return entry;
    const { subscription, logger } = this.#options;
    logger.info({ fromLsn: formatLsn(durable), untilLsn: formatLsn(until), quarantine: [...this.#pending.keys()].map(formatLsn) },
      'applying the stopped stretch one source transaction per target transaction, to find the failing one');
    return new IsolationStage(entry ?? sink, sink, {
      untilLsn: [...this.#pending.keys()].reduce(maxLsn, until), quarantine: new Map(this.#pending), subscription, logger,
      ...(this.#options.onQuarantined ? { onQuarantined: this.#options.onQuarantined } : {}),
    });
  }

  async #readStop(durable: Lsn): Promise<void> {
    const target = this.#options.target!;
    const stop = await readApplyStop(target, this.#options.subscription);
    this.#skipUntil = ZERO_LSN;
    this.#skipOpen = false;
    if (!stop) return;
    if (stop.untilLsn <= durable && (stop.skipLsn === undefined || stop.skipLsn <= durable)) {
      await clearApplyStop(target, this.#options.subscription, durable).catch(() => {});
      return;
    }
    if (!stop.skip) return;
    this.#skipUntil = stop.untilLsn;
    if (stop.skipLsn !== undefined) {
      this.#pending.set(stop.skipLsn, {
        reason: { code: stop.errorCode, sqlState: stop.sqlState, message: `skipped by pgtide skip --lsn ${formatLsn(stop.skipLsn)}; apply had stopped with: ${stop.errorMessage}` },
        consumesSkip: true,
      });
    } else {
      this.#skipOpen = ![...this.#pending.values()].some((o) => o.consumesSkip);
    }
  }

  /** The attempt failed with `error` at applied position `durable`. */
  decide(error: unknown, durable: Lsn): Decision {
    const { logger } = this.#options;
    if (error instanceof IsolationFailure) {
      const { tx, failure } = error;
      const reason = { code: failure.code, sqlState: failure.sqlState, message: failure.message };
      if (this.#skipOpen) {
        this.#skipOpen = false;
        this.#pending.set(tx.commitLsn, { reason, consumesSkip: true });
        logger.warn({ xid: tx.xid, commitLsn: formatLsn(tx.commitLsn), code: failure.code }, `found the failing source transaction (xid ${tx.xid}, commit LSN ${formatLsn(tx.commitLsn)}); quarantining it as pgtide skip asked`);
        return { kind: 'retry' };
      }
      if (this.#options.policy === 'quarantine') {
        this.#pending.set(tx.commitLsn, { reason, consumesSkip: false });
        logger.warn({ xid: tx.xid, commitLsn: formatLsn(tx.commitLsn), code: failure.code }, `source transaction xid ${tx.xid} (commit LSN ${formatLsn(tx.commitLsn)}) fails deterministically; quarantining it (apply.onDeterministicError: quarantine): ${failure.message}`);
        return { kind: 'retry' };
      }
      // Isolated, so the stop names exactly this transaction.
      return { kind: 'stop', error: withSpan(failure, durable, tx.commitLsn) };
    }
    if (!isDeterministicApplyError(error)) return { kind: 'other' };
    const span = stoppedSpanOf(error);
    if (span === undefined || span.untilLsn <= durable) return { kind: 'stop', error };
    if (this.#options.policy === 'quarantine' && span.untilLsn > this.#autoUntil) {
      this.#autoUntil = span.untilLsn;
      logger.warn({ code: error.code, sqlState: error.sqlState, fromLsn: formatLsn(durable), untilLsn: formatLsn(span.untilLsn) },
        `apply failed deterministically (${error.message}); apply.onDeterministicError is quarantine: applying that batch again one source transaction at a time to quarantine the failing one`);
      return { kind: 'retry' };
    }
    return { kind: 'stop', error: withSpan(error, durable, span.untilLsn) };
  }

  /** Records the stop on the target, for `pgtide skip`; best effort (the error itself is what matters). */
  async recordStop(error: unknown): Promise<void> {
    const target = this.#options.target;
    const stop = stopOf(error);
    if (!target || !stop || !(error instanceof PgtideError)) return;
    await recordApplyStop(target, this.#options.subscription, { ...stop, error }).catch((e: unknown) => {
      this.#options.logger.warn({ error: e instanceof Error ? e.message : String(e) }, 'could not record the stopped span on the target; pgtide skip will need --lsn');
    });
  }
}

const stops = new WeakMap<object, { readonly fromLsn: Lsn; readonly untilLsn: Lsn }>();

function withSpan<E extends object>(error: E, fromLsn: Lsn, untilLsn: Lsn): E {
  stops.set(error, { fromLsn, untilLsn });
  return error;
}

function stopOf(error: unknown): { readonly fromLsn: Lsn; readonly untilLsn: Lsn } | undefined {
  return typeof error === 'object' && error !== null ? stops.get(error) : undefined;
}
