import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransactionAssembler } from '../../src/changes/transaction-assembler.js';
import type { CommitInfo, RowChange, TransactionInfo } from '../../src/changes/change.js';
import type { PgoutputMessage, PgTimestamp } from '../../src/protocol/messages.js';
import { lsn, ZERO_LSN, type Lsn } from '../../src/core/lsn.js';
import { deferred } from '../../src/core/async.js';
import type { Sink } from '../../src/sinks/sink.js';
import { AckPolicy } from '../../src/pipeline/ack-policy.js';
import { runStreamLoop } from '../../src/pipeline/stream-loop.js';
import type { AckState } from '../../src/source/replication-session.js';

const ts = 0n as PgTimestamp;
const relation: PgoutputMessage = { tag: 'relation', xid: undefined, relationOid: 1, schema: 'public', name: 't', replicaIdentity: 'default', columns: [{ name: 'v', isKey: true, typeOid: 25, typeMod: -1 }] };
const begin = (xid: number, end: bigint): PgoutputMessage => ({ tag: 'begin', finalLsn: lsn(end - 10n), commitTime: ts, xid });
const insert = (value: string): PgoutputMessage => ({ tag: 'insert', xid: undefined, relationOid: 1, newTuple: [{ kind: 'text', value }] });
const commit = (end: bigint): PgoutputMessage => ({ tag: 'commit', flags: 0, commitLsn: lsn(end - 10n), endLsn: lsn(end), commitTime: ts });

/** A sink that batches like the writer: commitPending makes the last committed transaction durable. */
class FakeSink implements Sink {
  readonly log: string[] = [];
  durableLsn: Lsn = ZERO_LSN;
  #pendingEnd: Lsn | undefined;
  #inTx = false;
  get hasPendingWork(): boolean { return this.#inTx || this.#pendingEnd !== undefined; }
  get atBoundary(): boolean { return !this.#inTx; }
  begin(tx: TransactionInfo): void { this.#inTx = true; this.log.push(`begin ${tx.xid}`); }
  change(change: RowChange): void { this.log.push(`change ${change.kind}`); }
  commit(info: CommitInfo): void { this.#inTx = false; this.#pendingEnd = info.endLsn; this.log.push(`commit ${info.endLsn}`); }
  async commitPending(): Promise<void> {
    if (this.#pendingEnd !== undefined) this.durableLsn = this.#pendingEnd;
    this.#pendingEnd = undefined;
    this.log.push('commitPending');
  }
  async rollback(): Promise<void> { this.#pendingEnd = undefined; this.#inTx = false; this.log.push('rollback'); }
  async close(): Promise<void> {}
}

/** A session that hands out prepared batches of payloads; an empty batch is an idle wait. */
class FakeSession {
  readonly #batches: PgoutputMessage[][];
  readonly #controller: AbortController;
  readonly messages: PgoutputMessage[] = [];
  constructor(batches: PgoutputMessage[][], controller: AbortController) {
    this.#batches = batches;
    this.#controller = controller;
  }
  async next(): Promise<readonly Uint8Array[]> {
    const batch = this.#batches.shift();
    if (batch === undefined) { this.#controller.abort(); return []; }
    return batch.map((message) => Uint8Array.of(this.messages.push(message) - 1));
  }
  /** Payloads here are indexes into `messages`. */
  readonly decoder = { decode: (payload: Uint8Array): PgoutputMessage => this.messages[payload[0]!]! };
}

function setUp(batches: PgoutputMessage[][]) {
  const controller = new AbortController();
  const session = new FakeSession(batches, controller);
  const sink = new FakeSink();
  const assembler = new TransactionAssembler(sink, { memoryCap: 1 << 20 });
  const ack = new AckPolicy(sink, assembler);
  const activity = { idle: 0, active: 0 };
  const durable: Lsn[] = [];
  const run = () => runStreamLoop({
    session, decoder: session.decoder, assembler, sink, ack,
    activity: { idle: () => { activity.idle++; }, activity: () => { activity.active++; } },
    idleWaitMs: 1, signal: controller.signal, onDurable: (position) => durable.push(position),
  });
  return { sink, assembler, ack, activity, durable, run };
}

test('ack policy: quiescent only when nothing is being processed, assembled or pending in the sink', () => {
  const sink = { durableLsn: lsn(50n), hasPendingWork: false };
  const assembler = { inFlight: false };
  const ack = new AckPolicy(sink, assembler);
  assert.deepEqual(ack.state(), { durableLsn: lsn(50n), quiescent: true } satisfies AckState);
  ack.processing(true);
  assert.equal(ack.state().quiescent, false, 'payloads taken from the session are not applied yet');
  ack.processing(false);
  assembler.inFlight = true;
  assert.equal(ack.state().quiescent, false, 'a transaction is half assembled');
  assembler.inFlight = false;
  sink.hasPendingWork = true;
  assert.equal(ack.state().quiescent, false, 'the sink holds work that is not durable');
  assert.equal(ack.state().durableLsn, lsn(50n));
});

test('the loop applies in order, commits when idle, and reports each durable move', async () => {
  const { sink, activity, durable, run } = setUp([
    [relation, begin(1, 100n), insert('a'), commit(100n)],
    [],
    [begin(2, 200n), insert('b'), commit(200n)],
  ]);
  await run();
  // The last idle pass commits 200; at shutdown nothing is pending, so the (empty) batch is rolled back.
  assert.deepEqual(sink.log, ['begin 1', 'change insert', 'commit 100', 'commitPending', 'begin 2', 'change insert', 'commit 200', 'commitPending', 'rollback']);
  assert.deepEqual(durable, [lsn(100n), lsn(200n)]);
  assert.equal(sink.durableLsn, lsn(200n));
  assert.ok(activity.idle >= 1 && activity.active === 2);
});

test('on abort in the middle of a transaction the pending batch is rolled back, not committed', async () => {
  const { sink, run } = setUp([
    [relation, begin(1, 100n), insert('a'), commit(100n), begin(2, 200n), insert('b')],
  ]);
  await run();
  assert.equal(sink.log.at(-1), 'rollback');
  assert.equal(sink.durableLsn, ZERO_LSN, 'nothing of the batch is reported durable');
});

test('while the loop awaits the pipeline in the middle of a batch, the session may not acknowledge a keepalive', async () => {
  // Between two payloads of one batch the assembler can be between transactions and the sink can hold
  // nothing pending (it just flushed): only the payloads not yet pushed are unapplied.
  const controller = new AbortController();
  const session = new FakeSession([[begin(1, 100n), commit(100n), begin(2, 200n), commit(200n)]], controller);
  const sink = new FakeSink();
  const stall = deferred<void>();
  const pushed: string[] = [];
  const assembler = {
    inFlight: false,
    push(message: PgoutputMessage): void | Promise<void> {
      pushed.push(message.tag);
      return pushed.length === 2 ? stall.promise : undefined;
    },
  };
  const ack = new AckPolicy(sink, assembler);
  const running = runStreamLoop({
    session, decoder: session.decoder, assembler, sink, ack, activity: { idle: () => {}, activity: () => {} },
    idleWaitMs: 1, signal: controller.signal, onDurable: () => {},
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(pushed, ['begin', 'commit'], 'the loop waits after the second payload');
  assert.equal(sink.hasPendingWork, false);
  assert.deepEqual(ack.state(), { durableLsn: ZERO_LSN, quiescent: false } satisfies AckState);
  stall.resolve();
  await running;
  assert.deepEqual(pushed, ['begin', 'commit', 'begin', 'commit']);
  assert.equal(ack.state().quiescent, true, 'quiescent again once the batch is through');
});

test('every wait on the sink goes through the guard, the wait for payloads does not', async () => {
  const controller = new AbortController();
  const session = new FakeSession([[relation, begin(1, 100n), insert('a'), commit(100n)], [], [begin(2, 200n), insert('b')]], controller);
  const sink = new FakeSink();
  const assembler = new TransactionAssembler(sink, { memoryCap: 1 << 20 });
  const guarded: string[] = [];
  await runStreamLoop({
    session, decoder: session.decoder, assembler, sink, ack: new AckPolicy(sink, assembler), activity: { idle: () => {}, activity: () => {} },
    guard: (work, what) => { guarded.push(what); return work; },
    idleWaitMs: 1, signal: controller.signal, onDurable: () => {},
  });
  // The commit message is pushed as a promise (the assembler awaits the sink's commit), so it is guarded too.
  assert.deepEqual(guarded, ['applying received changes to the target', 'a commit on the target', 'rolling back on the target']);
});
