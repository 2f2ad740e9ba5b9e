/**
 * Runs sequence sync rounds beside streaming.
 *
 * A round that fails (a server restarting, a network blip, a bug) is reported
 * through onError and retried at the next interval: sequence sync is a safety
 * net for failover and must never take the replication engine down. Rounds
 * never overlap; the interval is measured from the start of one round to the
 * start of the next, so slow rounds do not drift the cadence further.
 */
import { PgtideError } from '../core/errors.js';
import type { PgtideConfig } from './config.js';
import { SequenceSync, sequenceProblems, summarizeSequenceReport, type SequenceSyncReport } from '../sequences/sequence-sync.js';
import { postgresTargetUrl } from './target-config.js';

/** A SequenceSync for a config: its tables (all when unset), sequences.include and sequences.ahead. */
export function createSequenceSync(config: PgtideConfig, overrides: { readonly fixDefinitions?: boolean; readonly ahead?: number | undefined } = {}): SequenceSync {
  return new SequenceSync({
    sourceUrl: config.source.url,
    targetUrl: postgresTargetUrl(config, 'sequence sync'),
    subscription: config.name,
    tables: config.tables,
    include: config.sequences.include,
    ahead: overrides.ahead ?? config.sequences.ahead,
    fixDefinitions: overrides.fixDefinitions === true,
  });
}

/** What the loop needs from SequenceSync (an interface, so tests and the engine can wrap it). */
export interface SequenceSyncRunner {
  syncOnce(): Promise<SequenceSyncReport>;
}

export interface SequenceSyncLoopOptions {
  readonly sync: SequenceSyncRunner;
  readonly intervalMs: number;
  /** Every completed round; the caller logs problems (report.ok false) as warnings. */
  readonly onReport?: ((report: SequenceSyncReport) => void) | undefined;
  /** Every failed round, and exceptions thrown by onReport. */
  readonly onError?: ((error: PgtideError) => void) | undefined;
  /** Aborting stops the loop like stop(). */
  readonly signal?: AbortSignal | undefined;
}

export interface SequenceSyncLoop {
  /** Ends the loop; resolves once a round in progress has finished, so no setval() happens afterwards. */
  stop(): Promise<void>;
  /** Settles when the loop has ended; never rejects. */
  readonly done: Promise<void>;
  /** Rounds completed so far (successful or not). */
  readonly rounds: number;
}

function asPgtideError(error: unknown): PgtideError {
  if (error instanceof PgtideError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new PgtideError('INTERNAL', `sequence sync round failed: ${message}`, { retryable: true, cause: error });
}

export function startSequenceSyncLoop(options: SequenceSyncLoopOptions): SequenceSyncLoop {
  if (!Number.isFinite(options.intervalMs) || options.intervalMs <= 0) {
    throw new PgtideError('CONFIG_INVALID', `sequences.intervalMs must be a positive number of milliseconds, got ${options.intervalMs}.`);
  }
  let stopped = false;
  let rounds = 0;
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;

  const report = (fn: (() => void) | undefined): void => {
    if (!fn) return;
    try {
      fn();
    } catch (error) {
      // A throwing callback must not end the loop; give it to onError unless that is the one that threw.
      try { options.onError?.(asPgtideError(error)); } catch { /* nothing left to tell */ }
    }
  };

  const sleep = (ms: number): Promise<void> => new Promise((resolve) => {
    if (stopped) { resolve(); return; }
    wake = resolve;
    timer = setTimeout(resolve, ms);
  });

  const stopNow = (): void => {
    stopped = true;
    if (timer) clearTimeout(timer);
    wake?.();
  };

  const onAbort = (): void => stopNow();
  if (options.signal?.aborted) stopped = true;
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const run = async (): Promise<void> => {
    while (!stopped) {
      const started = Date.now();
      try {
        const result = await options.sync.syncOnce();
        report(options.onReport && (() => options.onReport!(result)));
      } catch (error) {
        report(options.onError && (() => options.onError!(asPgtideError(error))));
      }
      rounds++;
      if (stopped) break;
      await sleep(Math.max(0, options.intervalMs - (Date.now() - started)));
    }
    options.signal?.removeEventListener('abort', onAbort);
  };
  // run() catches everything itself; the catch only guards against a bug turning into an unhandled rejection.
  const done = run().catch(() => {});

  return {
    stop: async () => {
      stopNow();
      await done;
    },
    done,
    get rounds() { return rounds; },
  };
}

/** Turns the loop's reports and errors into warnings, each problem once while it lasts. */
export interface SequenceProblemLog {
  report(report: SequenceSyncReport): void;
  error(error: PgtideError): void;
}

/**
 * A missing GRANT or a missing sequence fails the same way every round; one
 * warning per interval forever buries everything else in the log. A problem is
 * warned about when it first appears or changes, and again only after a round
 * without it.
 */
export function sequenceProblemLog(warn: (message: string) => void): SequenceProblemLog {
  let last = '';
  return {
    report(report) {
      const key = report.ok ? '' : sequenceProblems(report).join('\n') || 'not ok';
      if (key !== '' && key !== last) warn(`sequence sync: ${summarizeSequenceReport(report)} (reported once while it lasts)`);
      last = key;
    },
    error(error) {
      const key = `failed: ${error.code} ${error.message}`;
      if (key !== last) warn(`sequence sync failed: ${error.message}; retrying every interval (reported once while it lasts)`);
      last = key;
    },
  };
}
