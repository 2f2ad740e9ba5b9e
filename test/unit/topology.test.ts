/**
 * Topologies without a server: the origin policy, the origin filter on the
 * plain and the streamed path (through the real assembler), the source tag,
 * the config fields, and `pgtide check`'s loop finder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransactionAssembler } from '../../src/changes/transaction-assembler.js';
import type { CommitInfo, RowChange, StreamedTransactionApplier, TransactionInfo, TransactionSink } from '../../src/changes/change.js';
import type { PgoutputMessage, PgTimestamp, RelationMessage } from '../../src/protocol/messages.js';
import { lsn } from '../../src/core/lsn.js';
import { OriginMatcher, originPolicy, type OriginSetting } from '../../src/apply/origin-policy.js';
import { topologyStages } from '../../src/apply/topology-stages.js';
import { parseConfig } from '../../src/control/config.js';
import { refuseSharedSequenceSync } from '../../src/control/topology-config.js';
import { topologyProblems, type TopologyEdge, type TopologyNode } from '../../src/control/topology-check.js';
import { ConfigError } from '../../src/core/errors.js';

class RecordingSink implements TransactionSink {
  readonly events: string[] = [];
  readonly changes: RowChange[] = [];
  begin(tx: TransactionInfo): void { this.events.push(`begin ${tx.xid}${tx.origin ? ` from ${tx.origin}` : ''}`); }
  change(change: RowChange): void { this.changes.push(change); this.events.push(`change ${valueOf(change)}`); }
  commit(info: CommitInfo): void { this.events.push(`commit ${info.endLsn}`); }
}

/** A direct streamed applier that records what it is given (takes every transaction offered). */
class RecordingDirect implements StreamedTransactionApplier {
  readonly events: string[] = [];
  readonly #open = new Set<number>();
  get openCount(): number { return this.#open.size; }
  async start(xid: number, origin: string | undefined): Promise<boolean> { this.#open.add(xid); this.events.push(`start ${xid}${origin ? ` from ${origin}` : ''}`); return true; }
  change(xid: number, _subxid: number, change: RowChange): void { this.events.push(`change ${xid} ${valueOf(change)}`); }
  chunkStart(): void {}
  chunkEnd(): void {}
  async abort(xid: number): Promise<void> { this.#open.delete(xid); }
  async commit(xid: number, info: CommitInfo): Promise<void> { this.#open.delete(xid); this.events.push(`commit ${xid} ${info.endLsn}`); }
  async reset(): Promise<void> { this.#open.clear(); }
}

function valueOf(change: RowChange): string {
  if (change.kind !== 'insert') return change.kind;
  return change.newTuple.map((v) => (v.kind === 'text' ? v.value : v.kind)).join(',');
}

const ts = 0n as PgTimestamp;
const relation = (xid?: number): RelationMessage => ({ tag: 'relation', xid, relationOid: 1, schema: 'public', name: 't', replicaIdentity: 'default', columns: [{ name: 'v', isKey: true, typeOid: 25, typeMod: -1 }] });
const insert = (value: string, xid?: number): PgoutputMessage => ({ tag: 'insert', xid, relationOid: 1, newTuple: [{ kind: 'text', value }] });
const plain = (xid: number, commit: bigint, origin: string | undefined, value: string): PgoutputMessage[] => [
  { tag: 'begin', finalLsn: lsn(commit), commitTime: ts, xid },
  ...(origin ? [{ tag: 'origin', originLsn: lsn(1n), originName: origin } as const] : []),
  insert(value),
  { tag: 'commit', flags: 0, commitLsn: lsn(commit), endLsn: lsn(commit + 1n), commitTime: ts },
];
/** A streamed transaction in two chunks; as pgoutput sends it, only the first chunk carries the origin. */
const streamed = (xid: number, commit: bigint, origin: string | undefined, values: readonly [string, string]): PgoutputMessage[] => [
  { tag: 'stream_start', xid, firstSegment: true },
  ...(origin ? [{ tag: 'origin', originLsn: lsn(1n), originName: origin } as const] : []),
  relation(xid), insert(values[0], xid), { tag: 'stream_stop' },
  { tag: 'stream_start', xid, firstSegment: false }, insert(values[1], xid), { tag: 'stream_stop' },
  { tag: 'stream_commit', xid, flags: 0, commitLsn: lsn(commit), endLsn: lsn(commit + 1n), commitTime: ts },
];

async function feed(assembler: TransactionAssembler, messages: readonly PgoutputMessage[]): Promise<void> {
  for (const m of messages) await assembler.push(m);
}

const matcher = (setting: OriginSetting) => new OriginMatcher(originPolicy(setting));

test('origin policies: local writes always pass; none, any, allow and deny judge the origin; * matches any run', () => {
  const local = undefined;
  assert.equal(matcher('any').accepts('pgtide_ab_16384'), true);
  assert.equal(matcher('none').accepts('pgtide_ab_16384'), false);
  assert.equal(matcher('none').accepts(local), true);
  const allow = matcher({ allow: ['pgtide_east_*'] });
  assert.equal(allow.accepts('pgtide_east_16384'), true);
  assert.equal(allow.accepts('pgtide_west_16384'), false);
  assert.equal(allow.accepts(local), true);
  const deny = matcher({ deny: ['pgtide_east_*', 'pg_16400'] });
  assert.equal(deny.accepts('pgtide_east_1'), false);
  assert.equal(deny.accepts('pg_16400'), false);
  assert.equal(deny.accepts('pg_164000'), true, 'a pattern without * matches the whole name only');
  assert.equal(matcher({ allow: ['a.b'] }).accepts('axb'), false, 'regex characters are literal');
  // The server's own filter only exists for none, and only with protocol 4 (PostgreSQL 16+).
  assert.equal(matcher('none').serverFilters(4), true);
  assert.equal(matcher('none').serverFilters(2), false);
  assert.equal(matcher({ deny: ['x'] }).serverFilters(4), false);
});

test('the origin filter drops replicated transactions but passes them on empty, so the position moves', async () => {
  const sink = new RecordingSink();
  const stages = topologyStages(sink, undefined, { origins: matcher('none'), sourceTag: undefined });
  const asm = new TransactionAssembler(stages.sink, { memoryCap: 1 << 20 }, stages.direct);
  await feed(asm, [relation(), ...plain(1, 100n, undefined, 'local'), ...plain(2, 200n, 'pgtide_ab_5', 'echo'), ...plain(3, 300n, undefined, 'local-2')]);
  assert.deepEqual(sink.events, [
    'begin 1', 'change local', 'commit 101',
    'begin 2 from pgtide_ab_5', 'commit 201',
    'begin 3', 'change local-2', 'commit 301',
  ]);
  assert.equal(stages.originFilter?.droppedTransactions, 1);
});

test('streamed transactions: the origin of the first chunk reaches the filter on the buffered and the direct path', async () => {
  for (const withDirect of [false, true]) {
    const sink = new RecordingSink();
    const direct = withDirect ? new RecordingDirect() : undefined;
    const stages = topologyStages(sink, direct, { origins: matcher('none'), sourceTag: undefined });
    const asm = new TransactionAssembler(stages.sink, { memoryCap: 1 << 20 }, stages.direct);
    await feed(asm, [...streamed(7, 500n, 'pgtide_ab_5', ['echo-1', 'echo-2']), ...streamed(8, 600n, undefined, ['mine-1', 'mine-2'])]);
    assert.equal(asm.inFlight, false);
    // The dropped one arrives as an empty transaction in commit order, whichever path the accepted one took.
    if (withDirect) {
      assert.deepEqual(sink.events, ['begin 7 from pgtide_ab_5', 'commit 501']);
      assert.deepEqual(direct!.events, ['start 8', 'change 8 mine-1', 'change 8 mine-2', 'commit 8 601']);
    } else {
      assert.deepEqual(sink.events, ['begin 7 from pgtide_ab_5', 'commit 501', 'begin 8', 'change mine-1', 'change mine-2', 'commit 601']);
    }
    assert.equal(stages.originFilter?.droppedTransactions, 1);
  }
});

test('the direct applier is offered a streamed transaction with its origin (origins: any passes everything)', async () => {
  const sink = new RecordingSink();
  const direct = new RecordingDirect();
  const stages = topologyStages(sink, direct, { origins: matcher('any'), sourceTag: undefined });
  assert.equal(stages.originFilter, undefined, 'no filter stage for any');
  const asm = new TransactionAssembler(stages.sink, { memoryCap: 1 << 20 }, stages.direct);
  await feed(asm, streamed(9, 700n, 'pg_16400', ['a', 'b']));
  assert.deepEqual(direct.events, ['start 9 from pg_16400', 'change 9 a', 'change 9 b', 'commit 9 701']);
});

test('the source tag adds a key column and its value to every change, on both paths', async () => {
  const sink = new RecordingSink();
  const direct = new RecordingDirect();
  const stages = topologyStages(sink, direct, { origins: matcher('any'), sourceTag: { column: 'src', value: 'east' } });
  const asm = new TransactionAssembler(stages.sink, { memoryCap: 1 << 20 }, stages.direct);
  await feed(asm, [relation(), ...plain(1, 100n, undefined, 'x'), ...plain(2, 200n, undefined, 'y'), ...streamed(3, 300n, undefined, ['s1', 's2'])]);
  assert.deepEqual(sink.events.filter((e) => e.startsWith('change')), ['change x,east', 'change y,east']);
  assert.deepEqual(direct.events.filter((e) => e.startsWith('change')), ['change 3 s1,east', 'change 3 s2,east']);
  const [first, second] = sink.changes;
  assert.ok(first && second && first.kind === 'insert' && second.kind === 'insert');
  assert.deepEqual(first.relation.columns.map((c) => c.name), ['v', 'src']);
  assert.deepEqual(first.relation.keyIndexes, [0, 1], 'rows are matched on key + tag');
  assert.equal(first.relation, second.relation, 'one tagged relation per source relation (downstream caches key on it)');
  const clash = topologyStages(new RecordingSink(), undefined, { origins: matcher('any'), sourceTag: { column: 'v', value: 'east' } });
  const asm2 = new TransactionAssembler(clash.sink, { memoryCap: 1 << 20 });
  await assert.rejects(feed(asm2, [relation(), ...plain(1, 100n, undefined, 'x')]), /sourceTag.column "v" is a column of "public"."t" on the source too/);
});

test('config: origins defaults to any; none, allow and deny lists and sourceTag parse; others are refused', () => {
  const base = { source: { url: 'postgres://u@127.0.0.1:5432/a' }, target: { url: 'postgres://u@127.0.0.1:5433/b' } };
  assert.equal(parseConfig(base).origins, 'any');
  assert.equal(parseConfig({ ...base, origins: 'none' }).origins, 'none');
  assert.deepEqual(parseConfig({ ...base, origins: { deny: ['pgtide_x_*'] } }).origins, { deny: ['pgtide_x_*'] });
  assert.deepEqual(parseConfig({ ...base, sourceTag: { column: 'src', value: 'east' } }).sourceTag, { column: 'src', value: 'east' });
  assert.throws(() => parseConfig({ ...base, origins: 'some' }), /origins/);
  assert.throws(() => parseConfig({ ...base, origins: { allow: [] } }), /origins/);
  // Continuous sequence sync is refused where the config says the tables are written on several nodes.
  assert.throws(() => refuseSharedSequenceSync(parseConfig({ ...base, origins: 'none' })), (e: unknown) => e instanceof ConfigError && /sequences install.*docs\/sequences\.md/s.test(e.message));
  refuseSharedSequenceSync(parseConfig({ ...base, origins: 'none', sequences: { enabled: false } }));
  refuseSharedSequenceSync(parseConfig(base));
});

const nodeOf = (name: string): TopologyNode => ({ id: name, label: name });
const edge = (name: string, from: string, to: string, origins: OriginSetting): TopologyEdge => ({
  label: name, subscription: name, source: nodeOf(from), target: nodeOf(to), origins: matcher(origins), originName: `pgtide_${name}_1${to.charCodeAt(0)}`,
});

test('pgtide check: a two-way pair is refused with origins any on either edge, accepted with none on both', () => {
  const bothAny = topologyProblems([edge('ab', 'A', 'B', 'any'), edge('ba', 'B', 'A', 'any')]);
  assert.equal(bothAny.filter((p) => p.kind === 'loop').length, 2, 'each node\'s changes come back to it');
  assert.match(bothAny[0]!.message, /a change written on A comes back to A: A \(ab, origins any\) → B \(ba, origins any\) → A\. Set `origins: none` on ba/);
  const oneNone = topologyProblems([edge('ab', 'A', 'B', 'none'), edge('ba', 'B', 'A', 'any')]);
  assert.equal(oneNone.length, 1);
  assert.match(oneNone[0]!.message, /written on A comes back to A.*Set `origins: none` on ba/);
  assert.deepEqual(topologyProblems([edge('ab', 'A', 'B', 'none'), edge('ba', 'B', 'A', 'none')]), []);
  // A deny list that names the other edge's origin breaks the loop as well.
  assert.deepEqual(topologyProblems([edge('ab', 'A', 'B', { deny: ['pgtide_ba_*'] }), edge('ba', 'B', 'A', { deny: ['pgtide_ab_*'] })]), []);
  assert.equal(topologyProblems([edge('ab', 'A', 'B', { deny: ['pgtide_zz_*'] }), edge('ba', 'B', 'A', 'none')]).length, 1);
});

test('pgtide check: chains pass, rings and diamonds are found, a mesh with none passes, one name twice into one database is refused', () => {
  assert.deepEqual(topologyProblems([edge('ab', 'A', 'B', 'any'), edge('bc', 'B', 'C', 'any')]), [], 'a chain forwards with any');
  const ring = topologyProblems([edge('ab', 'A', 'B', 'any'), edge('bc', 'B', 'C', 'any'), edge('ca', 'C', 'A', 'any')]);
  assert.ok(ring.some((p) => p.kind === 'loop' && /written on A comes back to A/.test(p.message)));
  const diamond = topologyProblems([edge('ab', 'A', 'B', 'any'), edge('ac', 'A', 'C', 'any'), edge('bd', 'B', 'D', 'any'), edge('cd', 'C', 'D', 'any')]);
  assert.deepEqual(diamond.map((p) => p.kind), ['twice']);
  assert.match(diamond[0]!.message, /written on A reaches D 2 times/);
  const mesh = ['A', 'B', 'C'].flatMap((x) => ['A', 'B', 'C'].filter((y) => y !== x).map((y) => edge(`${x}${y}`.toLowerCase(), x, y, 'none')));
  assert.deepEqual(topologyProblems(mesh), [], 'a full mesh with origins none');
  const hub = [edge('ah', 'A', 'H', 'any'), edge('bh', 'B', 'H', 'any'), edge('ha', 'H', 'A', { deny: ['pgtide_ah_*'] }), edge('hb', 'H', 'B', { deny: ['pgtide_bh_*'] })];
  assert.ok(topologyProblems(hub).some((p) => p.kind === 'loop' && /written on A comes back to H/.test(p.message)), 'spokes that send the hub\'s forwards back to it loop');
  const goodHub = [edge('ah', 'A', 'H', 'none'), edge('bh', 'B', 'H', 'none'), edge('ha', 'H', 'A', { deny: ['pgtide_ah_*'] }), edge('hb', 'H', 'B', { deny: ['pgtide_bh_*'] })];
  assert.deepEqual(topologyProblems(goodHub), [], 'a hub forwarding each spoke\'s changes to the others, spokes sending only their own');
  const same = topologyProblems([edge('x', 'A', 'C', 'any'), { ...edge('x', 'B', 'C', 'any'), label: 'x (other.yaml)' }]);
  assert.deepEqual(same.map((p) => p.kind), ['same_subscription']);
});
