import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TransactionAssembler } from '../../src/changes/transaction-assembler.js';
import type { CommitInfo, RowChange, TransactionInfo, TransactionSink } from '../../src/changes/change.js';
import type { PgoutputMessage, PgTimestamp, RelationMessage } from '../../src/protocol/messages.js';
import { lsn } from '../../src/core/lsn.js';
import { ChangeGate } from '../../src/apply/change-gate.js';
import { tableKey } from '../../src/core/table-sync.js';

type Event = { readonly type: 'begin'; readonly tx: TransactionInfo } | { readonly type: 'change'; readonly change: RowChange } | { readonly type: 'commit'; readonly info: CommitInfo };

class RecordingSink implements TransactionSink {
  readonly events: Event[] = [];
  begin(tx: TransactionInfo): void { this.events.push({ type: 'begin', tx }); }
  change(change: RowChange): void { this.events.push({ type: 'change', change }); }
  commit(info: CommitInfo): void { this.events.push({ type: 'commit', info }); }
  values(): string[] {
    return this.events.flatMap((e) => (e.type === 'change' && e.change.kind === 'insert' && e.change.newTuple[0]?.kind === 'text' ? [e.change.newTuple[0].value] : []));
  }
}

const ts = 0n as PgTimestamp;
const relation = (xid?: number): RelationMessage => ({ tag: 'relation', xid, relationOid: 1, schema: 'public', name: 't', replicaIdentity: 'default', columns: [{ name: 'v', isKey: true, typeOid: 25, typeMod: -1 }] });
const insert = (value: string, xid?: number): PgoutputMessage => ({ tag: 'insert', xid, relationOid: 1, newTuple: [{ kind: 'text', value }] });

async function feed(assembler: TransactionAssembler, messages: readonly PgoutputMessage[]): Promise<void> {
  for (const m of messages) await assembler.push(m);
}

test('plain transactions pass through with origin, in order, with increasing op ids', async () => {
  const sink = new RecordingSink();
  const asm = new TransactionAssembler(sink, { memoryCap: 1 << 20 });
  await feed(asm, [
    relation(),
    { tag: 'begin', finalLsn: lsn(100n), commitTime: ts, xid: 7 },
    { tag: 'origin', originLsn: lsn(5n), originName: 'elsewhere' },
    insert('a'), insert('b'),
    { tag: 'commit', flags: 0, commitLsn: lsn(100n), endLsn: lsn(120n), commitTime: ts },
  ]);
  assert.deepEqual(sink.events.map((e) => e.type), ['begin', 'change', 'change', 'commit']);
  const begin = sink.events[0] as Extract<Event, { type: 'begin' }>;
  assert.equal(begin.tx.origin, 'elsewhere');
  assert.equal(begin.tx.commitLsn, 100n);
  const ops = sink.events.flatMap((e) => (e.type === 'change' ? [e.change.opId] : []));
  assert.ok(ops[0]! < ops[1]!);
  assert.equal(asm.inFlight, false);
});

test('streamed transactions are held until Stream Commit; aborted subtransactions and transactions vanish', async () => {
  const sink = new RecordingSink();
  const asm = new TransactionAssembler(sink, { memoryCap: 1 << 20 });
  await feed(asm, [
    { tag: 'stream_start', xid: 10, firstSegment: true }, relation(10), insert('t10-a', 10), insert('t10-sub', 11), { tag: 'stream_stop' },
    { tag: 'stream_start', xid: 20, firstSegment: true }, insert('t20-a', 20), { tag: 'stream_stop' },
    { tag: 'stream_start', xid: 10, firstSegment: false }, insert('t10-b', 10), { tag: 'stream_stop' },
  ]);
  assert.equal(sink.events.length, 0, 'nothing reaches the sink before commit');
  assert.equal(asm.inFlight, true);
  await feed(asm, [
    { tag: 'stream_abort', xid: 10, subxid: 11, abortLsn: undefined, abortTime: undefined },
    { tag: 'stream_abort', xid: 20, subxid: 20, abortLsn: undefined, abortTime: undefined },
    { tag: 'stream_commit', xid: 10, flags: 0, commitLsn: lsn(300n), endLsn: lsn(310n), commitTime: ts },
  ]);
  assert.deepEqual(sink.values(), ['t10-a', 't10-b']);
  assert.equal((sink.events[0] as Extract<Event, { type: 'begin' }>).tx.streamed, true);
  assert.equal(asm.inFlight, false);
});

test('past the memory cap, streamed changes spill to disk and replay in order; files are removed', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtide-spill-test-'));
  try {
    const sink = new RecordingSink();
    const asm = new TransactionAssembler(sink, { memoryCap: 4096, spillDir: dir });
    const values = Array.from({ length: 2000 }, (_, i) => `value-${i}-${'x'.repeat(i % 50)}`);
    const messages: PgoutputMessage[] = [{ tag: 'stream_start', xid: 5, firstSegment: true }, relation(5)];
    values.forEach((v, i) => messages.push(insert(v, i % 100 === 99 ? 6 : 5)));
    messages.push({ tag: 'stream_stop' });
    await feed(asm, messages);
    assert.ok(asm.spilledBytes > 0, 'spilled');
    assert.ok(asm.streamedMemoryBytes <= 4096, `memory ${asm.streamedMemoryBytes} within cap`);
    await feed(asm, [
      { tag: 'stream_abort', xid: 5, subxid: 6, abortLsn: undefined, abortTime: undefined },
      { tag: 'stream_commit', xid: 5, flags: 0, commitLsn: lsn(900n), endLsn: lsn(910n), commitTime: ts },
    ]);
    assert.deepEqual(sink.values(), values.filter((_, i) => i % 100 !== 99));
    assert.deepEqual(readdirSync(dir), [], 'spill directory cleaned up');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gate skips transactions applied before a restart and tables not ready or covered by their copy', async () => {
  const sink = new RecordingSink();
  const tables = new Map([[tableKey('public', 't'), { state: 'ready' as const, syncLsn: lsn(150n) }]]);
  const gate = new ChangeGate(sink, tables, lsn(120n));
  const asm = new TransactionAssembler(gate, { memoryCap: 1 << 20 });
  const tx = (commit: bigint, value: string): PgoutputMessage[] => [
    { tag: 'begin', finalLsn: lsn(commit), commitTime: ts, xid: 1 }, insert(value),
    { tag: 'commit', flags: 0, commitLsn: lsn(commit), endLsn: lsn(commit + 10n), commitTime: ts },
  ];
  await feed(asm, [relation(), ...tx(100n, 'applied-before'), ...tx(130n, 'in-copy'), ...tx(200n, 'new')]);
  assert.deepEqual(sink.values(), ['new']);
  assert.equal(gate.skippedTransactions, 1);
  assert.equal(gate.filteredChanges, 1);
});
