/**
 * The hot loop: payloads from the replication session are decoded, assembled
 * into transactions and handed to the stages and the sink; when the stream is
 * idle, complete pending work is committed so latency stays low under light
 * load. On abort the pending batch is committed if it ends on a transaction
 * boundary and rolled back otherwise, so the recorded position always matches
 * what is committed.
 */
import type { PgoutputMessage } from '../protocol/messages.js';
import type { Lsn } from '../core/lsn.js';
import type { Sink } from '../sinks/sink.js';
import type { AckPolicy, InFlight } from './ack-policy.js';

export interface PayloadSource {
  /** The next payloads, or none after `waitMs`: none means "idle". */
  next(waitMs: number): Promise<readonly Uint8Array[]>;
}

export interface Decoder {
  decode(payload: Uint8Array): PgoutputMessage;
}

export interface Assembler extends InFlight {
  push(message: PgoutputMessage): void | Promise<void>;
}

/** Told when the stream is idle or active (the source heartbeat). */
export interface ActivityListener {
  idle(): void;
  activity(): void;
}

export interface StreamLoopOptions {
  readonly session: PayloadSource;
  readonly decoder: Decoder;
  readonly assembler: Assembler;
  readonly sink: Sink;
  readonly ack: AckPolicy;
  readonly activity: ActivityListener;
  readonly idleWaitMs: number;
  readonly signal: AbortSignal;
  /**
   * Wraps each wait on the sink (commits, rollbacks, a push that asked to wait),
   * e.g. to bound it in time; the wait for the next payload is not wrapped.
   */
  readonly guard?: <T>(work: Promise<T>, what: string) => Promise<T>;
  /** Called each time the sink's durable position moves. */
  readonly onDurable: (durableLsn: Lsn) => void;
}

export async function runStreamLoop(options: StreamLoopOptions): Promise<void> {
  const { session, decoder, assembler, sink, ack, activity, idleWaitMs, signal, onDurable } = options;
  const guard = options.guard ?? (<T>(work: Promise<T>): Promise<T> => work);
  let lastDurable = sink.durableLsn;
  while (!signal.aborted) {
    const payloads = await session.next(idleWaitMs);
    if (payloads.length === 0) {
      activity.idle();
      if (sink.hasPendingWork && sink.atBoundary) await guard(sink.commitPending(), 'a commit on the target');
    } else {
      activity.activity();
      ack.processing(true);
      for (const payload of payloads) {
        const waited = assembler.push(decoder.decode(payload));
        if (waited) await guard(waited, 'applying received changes to the target');
      }
      ack.processing(false);
    }
    if (sink.durableLsn !== lastDurable) {
      lastDurable = sink.durableLsn;
      onDurable(lastDurable);
    }
  }
  if (sink.hasPendingWork && sink.atBoundary && !assembler.inFlight) {
    await guard(sink.commitPending(), 'the last commit on the target');
  } else {
    await guard(sink.rollback(), 'rolling back on the target');
  }
}
