/**
 * One road for every transaction: a streamed transaction that the sink
 * applies while it streams passes the same gate as an ordinary one
 * (ChangeGate.streamed()). The sink's applier sees only what the table-sync
 * rule lets through, is not offered a transaction while a table's sync LSN is
 * above what it will commit after, and gets an abort, not a commit, for a
 * transaction applied before a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChangeGate } from '../../src/apply/change-gate.js';
import type { CommitInfo, OpId, RowChange, StreamedTransactionApplier, TransactionInfo, TransactionSink } from '../../src/changes/change.js';
import type { Relation } from '../../src/changes/relation-cache.js';
import { lsn } from '../../src/core/lsn.js';
import { tableKey, type TableGateState } from '../../src/core/table-sync.js';
import type { PgTimestamp } from '../../src/protocol/messages.js';

const rel = (name: string): Relation => ({ oid: name.length, schema: 'public', name, replicaIdentity: 'default', columns: [{ name: 'id', isKey: true, typeOid: 23, typeMod: -1 }], keyIndexes: [0], qualifiedName: `"public"."${name}"`, version: 1 });
const ready = rel('ready_t');
const copying = rel('copying_t');
const insert = (relation: Relation): RowChange => ({ kind: 'insert', opId: 1 as OpId, relation, newTuple: [{ kind: 'text', value: '1' }] });
const ts = 0n as PgTimestamp;

class Recorder implements StreamedTransactionApplier {
  readonly log: string[] = [];
  openCount = 0;
  async start(xid: number): Promise<boolean> { this.log.push(`start ${xid}`); return true; }
  change(xid: number, subxid: number, change: RowChange): void {
    this.log.push(`change ${xid}/${subxid} ${change.kind}${change.kind === 'truncate' ? ` ${change.relations.map((r) => r.name).join(',')}` : change.kind === 'message' ? '' : ` ${change.relation.name}`}`);
  }
  chunkStart(xid: number): void { this.log.push(`chunk ${xid}`); }
  chunkEnd(): void {}
  async abort(xid: number, subxid: number): Promise<void> { this.log.push(`abort ${xid}/${subxid}`); }
  async commit(xid: number, info: CommitInfo): Promise<void> { this.log.push(`commit ${xid} at ${info.commitLsn}`); }
  async reset(): Promise<void> {}
}

const nothing: TransactionSink = { begin: () => {}, change: () => {}, commit: () => {} };

function gateWith(tables: Record<string, TableGateState>, applied: bigint, start: bigint): ChangeGate {
  return new ChangeGate(nothing, new Map(Object.entries(tables).map(([name, state]) => [tableKey('public', name), state])), lsn(applied), lsn(start));
}

test('streamed changes pass the table-sync rule of the gate; messages reach the sink, which decides', async () => {
  const gate = gateWith({ ready_t: { state: 'ready', syncLsn: lsn(50n) }, copying_t: { state: 'copying', syncLsn: lsn(0n) } }, 100n, 100n);
  const sink = new Recorder();
  const road = gate.streamed(sink);
  assert.equal(await road.start(7, undefined), true);
  await road.change(7, 7, insert(ready));
  await road.change(7, 8, insert(copying));
  await road.change(7, 7, { kind: 'truncate', opId: 2 as OpId, relations: [ready, copying], cascade: false, restartIdentity: false });
  await road.change(7, 7, { kind: 'message', opId: 3 as OpId, prefix: 'p', content: new Uint8Array() });
  await road.commit(7, { commitLsn: lsn(200n), endLsn: lsn(210n), commitTime: ts }, undefined);
  assert.deepEqual(sink.log, ['start 7', 'change 7/7 insert ready_t', 'change 7/7 truncate ready_t', 'change 7/7 message', 'commit 7 at 200']);
  assert.equal(gate.filteredChanges, 1);
});

test('a table whose sync LSN is above the floor keeps streamed transactions off the direct road until the stream passes it', async () => {
  const gate = gateWith({ ready_t: { state: 'ready', syncLsn: lsn(300n) } }, 100n, 100n);
  const sink = new Recorder();
  const road = gate.streamed(sink);
  assert.equal(await road.start(1, undefined), false, 'declined: it might commit below the sync LSN');
  assert.deepEqual(sink.log, [], 'the sink is not asked');
  // An ordinary transaction committing at 400 reached the stream: everything starting later commits after it.
  gate.begin({ xid: 2, commitLsn: lsn(400n), commitTime: ts, origin: undefined, streamed: false } satisfies TransactionInfo);
  gate.commit({ commitLsn: lsn(400n), endLsn: lsn(410n), commitTime: ts });
  assert.equal(await road.start(3, undefined), true);
});

test('a streamed transaction applied before a restart is aborted, not committed', async () => {
  const gate = gateWith({ ready_t: { state: 'ready', syncLsn: lsn(0n) } }, 500n, 500n);
  const sink = new Recorder();
  const road = gate.streamed(sink);
  await road.start(9, undefined);
  await road.change(9, 9, insert(ready));
  await road.commit(9, { commitLsn: lsn(450n), endLsn: lsn(460n), commitTime: ts }, undefined);
  assert.deepEqual(sink.log, ['start 9', 'change 9/9 insert ready_t', 'abort 9/9']);
  assert.equal(gate.skippedTransactions, 1);
});
