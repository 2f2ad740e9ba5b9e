/**
 * One streaming attempt, whatever the sink: the gate in front of the sink
 * (for ordinary and streamed transactions alike), the assembler, the
 * acknowledgement policy, START_REPLICATION and the replication session, then
 * the stream loop; on the way out the assembler's partial state and the
 * session are dropped, each within a time limit.
 *
 * The caller opens the sink (it knows which kind the config asks for), checks
 * the slot against the sink's durable position, and closes the sink after;
 * nothing here knows which sink it is. A sink that applies large streamed
 * transactions while they stream hands in its `streamed` applier; without
 * one they are buffered (and spilled) and replayed at commit through the same
 * gate and the same `begin/change/commit` calls as any other transaction.
 */
import type { StreamedTransactionApplier, TransactionSink } from '../changes/change.js';
import { TransactionAssembler } from '../changes/transaction-assembler.js';
import type { StreamedTransactionsOptions } from '../changes/streamed-transactions.js';
import { ChangeGate } from '../apply/change-gate.js';
import type { TableGateState } from '../core/table-sync.js';
import type { Lsn } from '../core/lsn.js';
import { PgoutputDecoder } from '../protocol/pgoutput-decoder.js';
import type { ReplicationConnection } from '../source/replication-connection.js';
import { ReplicationSession } from '../source/replication-session.js';
import { CLEANUP_MS, settleWithin } from '../pg/bounded.js';
import type { Sink } from '../sinks/sink.js';
import { AckPolicy } from './ack-policy.js';
import { runStreamLoop, type ActivityListener } from './stream-loop.js';

export interface AttemptOptions {
  readonly sink: Sink;
  /** What the gate hands ordinary transactions to; default the sink (OpenedSink.entry). */
  readonly entry?: TransactionSink | undefined;
  /** The sink's own road for streamed transactions, taken while they stream; none: buffered until commit. */
  readonly streamed?: StreamedTransactionApplier | undefined;
  /** Each published table's sync state, for the gate. */
  readonly tables: ReadonlyMap<string, TableGateState>;
  /** An open walsender connection; the caller closes it. */
  readonly replication: ReplicationConnection;
  readonly slot: string;
  readonly publications: readonly string[];
  readonly protocolVersion: 1 | 2 | 3 | 4;
  /** Where this attempt streams from (the sink's durable position, or the slot's start when later). */
  readonly startLsn: Lsn;
  readonly buffering: StreamedTransactionsOptions;
  /**
   * Stages composed in front of the gate (origin filter, source tag), on both
   * roads: what they return receives every transaction, ordinary or streamed.
   */
  readonly stages?: (gate: TransactionSink, streamed: StreamedTransactionApplier | undefined) => { readonly sink: TransactionSink; readonly direct: StreamedTransactionApplier | undefined };
  /** Ask the source for `origin 'none'` (PostgreSQL 16+): it drops changes that were replicated in. */
  readonly originNone?: boolean;
  readonly statusIntervalMs: number;
  readonly receiveTimeoutMs: number;
  /** Records a keepalive position before it is acknowledged (see replication-session.ts). */
  readonly persistAck: (lsn: Lsn) => Promise<void>;
  readonly activity: ActivityListener;
  /** Bounds a wait on a server in time (the stall watchdog). */
  readonly guard: <T>(work: Promise<T>, what: string) => Promise<T>;
  readonly idleWaitMs: number;
  readonly signal: AbortSignal;
  readonly onStarted?: () => void;
  readonly onDurable: (durableLsn: Lsn, serverWalEnd: Lsn) => void;
}

/** Streams until `signal` aborts (then the sink holds only whole transactions) or a failure is thrown. */
export async function runAttempt(options: AttemptOptions): Promise<void> {
  const { sink, guard } = options;
  let session: ReplicationSession | undefined;
  let assembler: TransactionAssembler | undefined;
  try {
    const gate = new ChangeGate(options.entry ?? sink, options.tables, sink.durableLsn, options.startLsn);
    const gated = options.streamed ? gate.streamed(options.streamed) : undefined;
    const front = options.stages ? options.stages(gate, gated) : { sink: gate, direct: gated };
    const asm = new TransactionAssembler(front.sink, options.buffering, front.direct);
    assembler = asm;
    const ack = new AckPolicy(sink, asm);
    const decoder = new PgoutputDecoder({ protocolVersion: options.protocolVersion });
    const stream = await guard(options.replication.startReplication({
      slot: options.slot, startLsn: options.startLsn, publications: options.publications, protocolVersion: options.protocolVersion, streaming: true,
      originNone: options.originNone ?? false,
    }), 'START_REPLICATION on the source');
    const live = new ReplicationSession(stream, {
      statusIntervalMs: options.statusIntervalMs,
      receiveTimeoutMs: options.receiveTimeoutMs,
      ackState: () => ack.state(),
      persistAck: options.persistAck,
    }, options.startLsn);
    session = live;
    options.onStarted?.();
    await runStreamLoop({
      session: live, decoder, assembler: asm, sink, ack, activity: options.activity, guard,
      idleWaitMs: options.idleWaitMs, signal: options.signal,
      onDurable: (durableLsn) => options.onDurable(durableLsn, live.serverWalEnd),
    });
    live.sendStatus();
  } finally {
    // Each step within a time limit: a clean-up that hangs on a dead connection would stop
    // the reconnect for good (issue 10, case 6).
    await settleWithin(assembler?.reset() ?? Promise.resolve(), CLEANUP_MS * 3);
    await settleWithin(session?.close() ?? Promise.resolve(), CLEANUP_MS);
  }
}
