/**
 * The one interface both replicators are driven through, so every scenario
 * measures pgtide and PostgreSQL's built-in logical replication the same way.
 */
import type postgres from 'postgres';
import type { Cluster } from '../../src/harness/cluster.js';
import type { Lsn } from '../../src/core/lsn.js';
import type { Table } from '../lib/db.js';
import type { ProcessGroups } from '../lib/memory.js';

export type Side = 'pgtide' | 'builtin';
export const SIDES: readonly Side[] = ['pgtide', 'builtin'];

export interface ReplicatorSetup {
  readonly source: Cluster;
  readonly sourceDb: string;
  readonly target: Cluster;
  readonly targetDb: string;
  /** Tables replicated; they already exist on both sides (the target's empty). */
  readonly tables: readonly Table[];
  /** Tables copied at the same time during the initial copy. */
  readonly copyParallelism: number;
  /** Connected to setup.source/sourceDb and setup.target/targetDb; owned by the caller. */
  readonly sourceSql: postgres.Sql;
  readonly targetSql: postgres.Sql;
  readonly log: (message: string) => void;
}

export interface Replicator {
  readonly side: Side;
  /** Human-readable settings, printed with the results. */
  readonly settings: string;
  /** Creates the publication/subscription or starts the process: the initial copy begins. */
  start(): Promise<void>;
  /** Resolves once every table has finished its initial copy. */
  waitCopyDone(timeoutMs: number): Promise<void>;
  /** The end LSN of the last source transaction committed on the target. */
  appliedLsn(): Promise<Lsn>;
  /** Throws when replication can no longer make progress (dead process, apply errors). */
  checkHealth(): Promise<void>;
  /** Stops consuming the slot; changes made meanwhile pile up as a backlog. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Removes everything it created (subscription, process, slot, publication); safe to call twice. */
  stop(): Promise<void>;
  processes(): Promise<ProcessGroups>;
  /** Peak RSS (VmHWM) of the replicator process, when it is a process of its own. */
  peakRssBytes(): number | undefined;
}
