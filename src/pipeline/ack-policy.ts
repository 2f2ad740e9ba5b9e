/**
 * What the replication session may acknowledge to the source.
 *
 * The session reports `durableLsn` (the end of the last source transaction the
 * sink made durable) at any time, and a keepalive's WAL end only while the
 * pipeline is quiescent: nothing taken from the session is still being
 * decoded or assembled, and the sink holds nothing that is not yet durable
 * (see the invariant in source/replication-session.ts). "Taken from the
 * session" matters: a keepalive can arrive while the loop awaits a flush in
 * the middle of a batch of payloads, and must not be acknowledged past the
 * payloads not yet applied.
 */
import type { AckState } from '../source/replication-session.js';
import type { Sink } from '../sinks/sink.js';

/** The part of the assembler the policy reads. */
export interface InFlight {
  /** True while a transaction has begun and not yet reached the sink whole. */
  readonly inFlight: boolean;
}

export class AckPolicy {
  readonly #sink: Pick<Sink, 'durableLsn' | 'hasPendingWork'>;
  readonly #assembler: InFlight;
  #processing = false;

  constructor(sink: Pick<Sink, 'durableLsn' | 'hasPendingWork'>, assembler: InFlight) {
    this.#sink = sink;
    this.#assembler = assembler;
  }

  /** Brackets the handling of payloads taken from the session. */
  processing(active: boolean): void {
    this.#processing = active;
  }

  state(): AckState {
    return {
      durableLsn: this.#sink.durableLsn,
      quiescent: !this.#processing && !this.#assembler.inFlight && !this.#sink.hasPendingWork,
    };
  }
}
