/**
 * A fresh source/target cluster pair for one side of a scenario, and the
 * wait-for-applied helper every scenario uses.
 */
import type postgres from 'postgres';
import type { Cluster } from '../../src/harness/cluster.js';
import type { Lsn } from '../../src/core/lsn.js';
import type { Replicator, ReplicatorSetup } from '../runners/types.js';
import type { Cleanup } from './cleanup.js';
import { connect, startBenchCluster, waitUntil, type Table } from './db.js';
import type { ScenarioContext } from './scenario.js';

export interface Pair {
  readonly source: Cluster;
  readonly target: Cluster;
  readonly sourceSql: postgres.Sql;
  readonly targetSql: postgres.Sql;
}

/** Starts both clusters at once (initdb is the slow part); both are destroyed by `cleanup`. */
export async function startPair(ctx: ScenarioContext, label: string, cleanup: Cleanup): Promise<Pair> {
  // allSettled, not all: a cluster still starting when the other one failed
  // must finish registering its destroy step before clean-up runs.
  const [source, target] = await Promise.allSettled([
    startBenchCluster(ctx.major, `${label}-src`, 'source', cleanup),
    startBenchCluster(ctx.major, `${label}-tgt`, 'target', cleanup),
  ]);
  if (source.status === 'rejected') throw source.reason;
  if (target.status === 'rejected') throw target.reason;
  return {
    source: source.value,
    target: target.value,
    sourceSql: connect(source.value, 'postgres', cleanup),
    targetSql: connect(target.value, 'postgres', cleanup),
  };
}

export async function startTarget(ctx: ScenarioContext, label: string, cleanup: Cleanup): Promise<{ readonly target: Cluster; readonly targetSql: postgres.Sql }> {
  const target = await startBenchCluster(ctx.major, `${label}-tgt`, 'target', cleanup);
  return { target, targetSql: connect(target, 'postgres', cleanup) };
}

export function setupFor(ctx: ScenarioContext, source: Cluster, sourceSql: postgres.Sql, target: Cluster, targetSql: postgres.Sql, tables: readonly Table[]): ReplicatorSetup {
  return { source, sourceDb: 'postgres', target, targetDb: 'postgres', tables, copyParallelism: ctx.options.copyParallelism, sourceSql, targetSql, log: ctx.log };
}

/** Resolves with performance.now() once the target has applied everything up to `lsn`. */
export async function waitApplied(replicator: Replicator, lsn: Lsn, what: string, timeoutMs: number, pollMs = 20): Promise<number> {
  return waitUntil(async () => (await replicator.appliedLsn()) >= lsn, { what, timeoutMs, pollMs, health: () => replicator.checkHealth() });
}

export const MINUTE = 60_000;
