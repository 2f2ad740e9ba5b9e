/**
 * Decode throughput on one core: a recorded-like pgoutput stream of
 * pgbench_accounts-shaped rows (aid, bid, abalance, filler char(84), all sent
 * as text) is built in memory once and then decoded with PgoutputDecoder.
 *
 *   node dist/bench/decode-bench.js [changes]
 *
 * The figure counts Insert/Update/Delete messages per second; Begin, Relation
 * and Commit are decoded too but not counted.
 */
import { Buffer } from 'node:buffer';
import { pathToFileURL } from 'node:url';
import { PgoutputDecoder } from '../src/protocol/pgoutput-decoder.js';

export interface DecodeBenchResult {
  readonly changesPerSecond: number;
  readonly bytes: number;
  readonly seconds: number;
}

/** Minimal big-endian writer, just enough to record the messages pgoutput would send. */
class Writer {
  private buf = Buffer.alloc(256);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  u8(v: number): this { this.ensure(1); this.buf[this.len++] = v; return this; }
  char(c: string): this { return this.u8(c.charCodeAt(0)); }
  i16(v: number): this { this.ensure(2); this.buf.writeInt16BE(v, this.len); this.len += 2; return this; }
  i32(v: number): this { this.ensure(4); this.buf.writeInt32BE(v, this.len); this.len += 4; return this; }
  u32(v: number): this { this.ensure(4); this.buf.writeUInt32BE(v, this.len); this.len += 4; return this; }
  i64(v: bigint): this { this.ensure(8); this.buf.writeBigInt64BE(v, this.len); this.len += 8; return this; }
  cstr(s: string): this { const b = Buffer.from(s, 'utf8'); this.ensure(b.length + 1); b.copy(this.buf, this.len); this.len += b.length; this.buf[this.len++] = 0; return this; }
  text(s: string): this { const b = Buffer.from(s, 'utf8'); this.char('t').i32(b.length); this.ensure(b.length); b.copy(this.buf, this.len); this.len += b.length; return this; }
  /** A copy sized to the message, as it would arrive in its own CopyData frame. */
  done(): Buffer { return Buffer.from(this.buf.subarray(0, this.len)); }
}

const RELATION_OID = 16_397;
const FILLER = ' '.repeat(84);

function accountRow(w: Writer, aid: number, balance: number): Writer {
  return w.i16(4).text(String(aid)).text(String(1 + Math.floor(aid / 100_000))).text(String(balance)).text(FILLER);
}

function keyOnly(w: Writer, aid: number): Writer {
  return w.i16(4).text(String(aid)).char('n').char('n').char('n');
}

/**
 * One session's worth of messages: a Relation in the first transaction, then
 * transactions of `perTxn` changes — mostly updates (as pgbench does), some
 * inserts, some deletes, and a few key-changing updates that carry an old key.
 */
function recordStream(totalChanges: number, perTxn = 50): { messages: Buffer[]; changes: number; bytes: number } {
  const messages: Buffer[] = [];
  let lsn = 0x1_6B37_4D48n;
  let xid = 1000;
  let changes = 0;
  let seed = 42;
  const rand = (): number => {
    seed = (seed * 1_103_515_245 + 12_345) & 0x7fff_ffff;
    return seed / 0x8000_0000;
  };
  while (changes < totalChanges) {
    xid++;
    messages.push(new Writer().char('B').i64(lsn + 10_000n).i64(800_000_000_000_000n + BigInt(xid)).u32(xid).done());
    if (changes === 0) {
      const w = new Writer().char('R').u32(RELATION_OID).cstr('public').cstr('pgbench_accounts').char('d').i16(4);
      w.u8(1).cstr('aid').u32(23).i32(-1);
      w.u8(0).cstr('bid').u32(23).i32(-1);
      w.u8(0).cstr('abalance').u32(23).i32(-1);
      w.u8(0).cstr('filler').u32(1042).i32(88);
      messages.push(w.done());
    }
    for (let i = 0; i < perTxn && changes < totalChanges; i++, changes++) {
      const aid = 1 + Math.floor(rand() * 10_000_000);
      const balance = Math.floor(rand() * 20_000) - 10_000;
      const roll = rand();
      if (roll < 0.6) {
        messages.push(accountRow(new Writer().char('U').u32(RELATION_OID).char('N'), aid, balance).done());
      } else if (roll < 0.65) {
        messages.push(accountRow(keyOnly(new Writer().char('U').u32(RELATION_OID).char('K'), aid).char('N'), aid + 1, balance).done());
      } else if (roll < 0.9) {
        messages.push(accountRow(new Writer().char('I').u32(RELATION_OID).char('N'), aid, balance).done());
      } else {
        messages.push(keyOnly(new Writer().char('D').u32(RELATION_OID).char('K'), aid).done());
      }
    }
    messages.push(new Writer().char('C').u8(0).i64(lsn + 10_000n).i64(lsn + 10_048n).i64(800_000_000_000_000n + BigInt(xid)).done());
    lsn += 20_000n;
  }
  return { messages, changes, bytes: messages.reduce((n, m) => n + m.length, 0) };
}

function decodeAll(messages: readonly Buffer[]): number {
  const decoder = new PgoutputDecoder({ protocolVersion: 1 });
  let counted = 0;
  for (const payload of messages) {
    const m = decoder.decode(payload);
    if (m.tag === 'insert' || m.tag === 'update' || m.tag === 'delete') counted++;
  }
  return counted;
}

export async function runDecodeBench(opts: { changes?: number } = {}): Promise<DecodeBenchResult> {
  const target = opts.changes ?? 1_000_000;
  // Record a bounded stream and replay it, so the figure measures decoding rather than memory bandwidth of a huge array.
  const recorded = recordStream(Math.min(target, 200_000));
  // Warm-up so the JIT has optimised the decoder before timing.
  decodeAll(recorded.messages);
  decodeAll(recorded.messages);
  let changes = 0;
  let bytes = 0;
  const started = process.hrtime.bigint();
  while (changes < target) {
    changes += decodeAll(recorded.messages);
    bytes += recorded.bytes;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { changesPerSecond: changes / seconds, bytes, seconds };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = process.argv[2];
  const changes = arg === undefined ? 2_000_000 : Number(arg);
  const result = await runDecodeBench({ changes });
  console.log(
    `pgoutput decode: ${Math.round(result.changesPerSecond).toLocaleString('en-US')} changes/s ` +
      `(${(result.bytes / result.seconds / 1e6).toFixed(1)} MB/s, ${result.seconds.toFixed(2)} s, one core)`,
  );
}
