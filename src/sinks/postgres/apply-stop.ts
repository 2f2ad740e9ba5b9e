/**
 * Which source transactions a stopped batch held, kept beside the error that
 * stopped it so the engine can record the stop (state/quarantine-state.ts)
 * and the next start can apply that stretch one transaction at a time
 * (isolation-stage.ts). A WeakMap rather than a field on PgtideError: the
 * error's shape stays what every other part of pgtide knows.
 */
import { maxLsn, type Lsn } from '../../core/lsn.js';
import type { FailureRecord } from './apply-failure.js';

export interface StoppedSpan {
  /** The highest commit LSN of the failed batch (the failing transaction commits at or below it). */
  readonly untilLsn: Lsn;
}

const spans = new WeakMap<object, StoppedSpan>();

/** Attaches the failed batch's span to the error raised for it; returns the error. */
export function withStoppedSpan<E extends object>(error: E, record: FailureRecord): E {
  const last = record.context.span?.last;
  const untilLsn = maxLsn(record.mark.maxCommitLsn, last && !last.streamed ? last.commitLsn : record.mark.maxCommitLsn);
  spans.set(error, { untilLsn });
  return error;
}

export function stoppedSpanOf(error: unknown): StoppedSpan | undefined {
  return typeof error === 'object' && error !== null ? spans.get(error) : undefined;
}
