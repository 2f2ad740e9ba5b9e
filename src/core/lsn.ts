/**
 * A PostgreSQL write-ahead-log position.
 *
 * Branded so that a plain bigint (a row count, an xid, a timestamp) can never be
 * passed where a WAL position is expected. LSNs are totally ordered across the
 * whole WAL, but *not* a safe ordering key inside a transaction: concurrent
 * transactions interleave their records, so pgtide orders changes by commit
 * order plus a per-change op id instead (see changes/transaction.ts).
 */
export type Lsn = bigint & { readonly __brand: 'Lsn' };

export const ZERO_LSN = 0n as Lsn;

export function lsn(value: bigint): Lsn {
  if (value < 0n || value > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError(`LSN out of range: ${value}`);
  }
  return value as Lsn;
}

/** Parses PostgreSQL's textual form, e.g. `16/B374D848`. */
export function parseLsn(text: string): Lsn {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!match) throw new RangeError(`not an LSN: ${JSON.stringify(text)}`);
  return ((BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`)) as Lsn;
}

export function formatLsn(value: Lsn): string {
  const hi = (value >> 32n).toString(16).toUpperCase();
  const lo = (value & 0xffff_ffffn).toString(16).toUpperCase();
  return `${hi}/${lo}`;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
