/**
 * What the conflicts*.test.ts files set up alike: a database pair with the
 * case's tables and rows, copied and streaming before the divergence is made;
 * the error the engine stopped with; the conflict log of a subscription.
 */
import assert from 'node:assert/strict';
import { parseConfig, type ConfigInput, type PgtideConfig } from '../../src/control/config.js';
import { PgtideError } from '../../src/core/errors.js';
import type { EngineHooks } from '../../src/control/engine.js';
import { databasePair, ddlBoth, startEngine, configInput, withTimeout, waitForCatchUp, type Pair, type RunningEngine, type TestScope } from './replication.js';

/** The error the engine stopped with, which must be a PgtideError. */
export async function stoppedWith(running: RunningEngine, timeoutMs = 60_000): Promise<PgtideError> {
  await withTimeout(running.done, timeoutMs, 'the engine did not stop');
  assert.ok(running.error instanceof PgtideError, `the engine stops with a PgtideError; got ${String(running.error)}`);
  return running.error;
}

export interface ConflictTables {
  /** CREATE TABLE … run on both sides. */
  readonly ddl: string;
  /** INSERTs on the source, copied to the target before streaming. */
  readonly rows: string;
  readonly tables: readonly string[];
}

/** Rows on both sides, copied, then streaming: the divergence is made on the target afterwards. */
export async function streamingPair(scope: TestScope, pair: Pair, database: string, setup: ConflictTables, conflicts: ConfigInput['conflicts'], hooks: EngineHooks = {}): Promise<{ p: Pair; running: RunningEngine; config: PgtideConfig }> {
  const p = await databasePair(scope, pair, database);
  await ddlBoth(p, setup.ddl);
  await p.src.unsafe(setup.rows);
  const config = parseConfig(configInput(p, { name: database, tables: [...setup.tables], ...(conflicts ? { conflicts } : {}) }));
  const running = startEngine(scope, config, hooks);
  await withTimeout(running.streaming, 90_000, 'streaming');
  await waitForCatchUp(p, { engine: running });
  return { p, running, config };
}

export interface LogRow {
  kind: string;
  resolution: string;
  table_name: string;
  key: Record<string, string>;
  remote_old: Record<string, string> | null;
  remote_new: Record<string, string> | null;
  local_row: Record<string, unknown> | null;
  local_commit_time: Date | null;
  index_name: string | null;
  source_xid: string | null;
  source_commit_lsn: string | null;
  source_commit_time: Date | null;
}

/** A subscription's conflict log, in `orderBy` order. */
export async function conflictLog(p: Pick<Pair, 'dst'>, subscription: string, orderBy = 'table_name, kind, key::text'): Promise<LogRow[]> {
  return [...await p.dst.unsafe<LogRow[]>(
    `SELECT kind, resolution, table_name, key, remote_old, remote_new, local_row, local_commit_time, index_name, source_xid::text AS source_xid,
            source_commit_lsn::text AS source_commit_lsn, source_commit_time
       FROM pgtide.conflict_log WHERE subscription = $1 ORDER BY ${orderBy}`, [subscription])];
}
