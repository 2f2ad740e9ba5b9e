/**
 * The lag sampler the live-lag scenarios share: every 200 ms, the source's WAL
 * position and the replicator's applied position, read together.
 */
import { performance } from 'node:perf_hooks';
import type postgres from 'postgres';
import { currentLsn, sleep } from './db.js';
import type { LagSample } from './stats.js';
import type { Replicator } from '../runners/types.js';

/** Samples (source LSN, applied LSN) every 200 ms until stopped. */
export async function sampleLag(sourceSql: postgres.Sql, replicator: Replicator, stop: () => boolean): Promise<LagSample[]> {
  const samples: LagSample[] = [];
  while (!stop()) {
    const next = performance.now() + 200;
    // Both positions read concurrently so they describe the same instant.
    const [sourceLsn, appliedLsn] = await Promise.all([currentLsn(sourceSql), replicator.appliedLsn()]);
    samples.push({ atMs: performance.now(), sourceLsn, appliedLsn });
    await sleep(Math.max(0, next - performance.now()));
  }
  return samples;
}
