/**
 * Small statistics helpers: percentiles and the conversion of an applied WAL
 * position into a lag in seconds.
 */

/** Nearest-rank percentile (p in 0..100) of a non-empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/** One observation of the source's WAL position and the target's applied position. */
export interface LagSample {
  /** performance.now() milliseconds. */
  readonly atMs: number;
  readonly sourceLsn: bigint;
  readonly appliedLsn: bigint;
}

/**
 * Lag in seconds at each sample: how long ago the source was at the position
 * the target has applied. The source's position over time comes from the
 * samples themselves (linear between two samples), so the same definition
 * works for both replicators without knowing commit timestamps.
 */
export function lagSeconds(samples: readonly LagSample[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < samples.length; i++) {
    const now = samples[i]!;
    if (now.appliedLsn >= now.sourceLsn) { out.push(0); continue; }
    // First sample (up to now) at which the source had reached the applied position.
    let j = 0;
    while (j <= i && samples[j]!.sourceLsn < now.appliedLsn) j++;
    let reachedAtMs: number;
    if (j === 0) {
      reachedAtMs = samples[0]!.atMs;
    } else {
      const before = samples[j - 1]!;
      const after = samples[Math.min(j, i)]!;
      const span = Number(after.sourceLsn - before.sourceLsn);
      const fraction = span > 0 ? Number(now.appliedLsn - before.sourceLsn) / span : 1;
      reachedAtMs = before.atMs + Math.min(1, Math.max(0, fraction)) * (after.atMs - before.atMs);
    }
    out.push(Math.max(0, (now.atMs - reachedAtMs) / 1000));
  }
  return out;
}

export function lagBytes(samples: readonly LagSample[]): number[] {
  return samples.map((s) => (s.appliedLsn >= s.sourceLsn ? 0 : Number(s.sourceLsn - s.appliedLsn)));
}
