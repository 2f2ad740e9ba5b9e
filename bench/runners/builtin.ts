/**
 * PostgreSQL's built-in logical replication (CREATE SUBSCRIPTION), driven
 * through the same interface as pgtide, at its best settings for the major:
 * streaming = parallel (16+; `on` before), binary transfer, and
 * max_sync_workers_per_subscription = the copy parallelism (set on the
 * cluster, see benchSettings).
 */
import type { Replicator, ReplicatorSetup } from './types.js';
import { ZERO_LSN, type Lsn } from '../../src/core/lsn.js';
import { dropSlotIfExists, parseNullableLsn, qualified, slotWalsenderPids, waitSlotInactive, waitUntil } from '../lib/db.js';
import { errorMessage } from '../lib/cleanup.js';
import type { ProcessGroups } from '../lib/memory.js';

const SUBSCRIPTION = 'bench_sub';
/** Not `bench_pub`: that is the name pgtide derives for a replication named `bench`. */
const PUBLICATION = 'builtin_pub';

export interface BuiltinOptions {
  /** `binary = true`: rows travel in binary (send/recv) format; from 16 the initial copy too. */
  readonly binary: boolean;
}

export class BuiltinReplicator implements Replicator {
  readonly side = 'builtin' as const;
  readonly settings: string;
  readonly #setup: ReplicatorSetup;
  readonly #options: string;
  #started = false;
  #stopped = false;

  constructor(setup: ReplicatorSetup, options: BuiltinOptions) {
    this.#setup = setup;
    const major = setup.target.major;
    const streaming = major >= 16 ? 'parallel' : 'on';
    this.#options = `copy_data = true, streaming = ${streaming}, binary = ${options.binary}`;
    this.settings = `CREATE SUBSCRIPTION ... WITH (${this.#options}); max_sync_workers_per_subscription = ${setup.copyParallelism}` +
      (major >= 16 ? ', max_parallel_apply_workers_per_subscription = 2' : '');
  }

  async start(): Promise<void> {
    const { sourceSql, targetSql, source, sourceDb, tables } = this.#setup;
    await sourceSql.unsafe(`CREATE PUBLICATION ${PUBLICATION} FOR TABLE ${tables.map(qualified).join(', ')}`);
    // Same machine, loopback: the subscriber connects to the source like any client would.
    const conninfo = `host=127.0.0.1 port=${source.port} user=${source.user} password=${source.password} dbname=${sourceDb}`;
    this.#started = true;
    await targetSql.unsafe(`CREATE SUBSCRIPTION ${SUBSCRIPTION} CONNECTION '${conninfo.replace(/'/g, "''")}' PUBLICATION ${PUBLICATION} WITH (${this.#options})`);
  }

  async waitCopyDone(timeoutMs: number): Promise<void> {
    const expected = this.#setup.tables.length;
    await waitUntil(async () => {
      const [row] = await this.#setup.targetSql<{ total: number; ready: number }[]>`
        SELECT count(*)::int AS total, count(*) FILTER (WHERE sr.srsubstate = 'r')::int AS ready
        FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid
        WHERE s.subname = ${SUBSCRIPTION}`;
      return row!.total === expected && row!.ready === expected;
    }, { what: 'the built-in initial copy (all pg_subscription_rel.srsubstate = r)', timeoutMs, pollMs: 100, health: () => this.checkHealth() });
  }

  async appliedLsn(): Promise<Lsn> {
    // The subscription's replication origin holds the end LSN of the last
    // applied remote commit (flush = false: applied, not necessarily flushed,
    // which matches "committed on the target").
    const rows = await this.#setup.targetSql<{ lsn: string | null }[]>`
      SELECT pg_replication_origin_progress('pg_' || oid, false)::text AS lsn FROM pg_subscription WHERE subname = ${SUBSCRIPTION}`;
    return rows.length === 0 ? ZERO_LSN : parseNullableLsn(rows[0]!.lsn);
  }

  async checkHealth(): Promise<void> {
    // Apply and table-sync errors only show in the server log, and the worker
    // retries forever; the statistics view (15+) lets us fail fast instead.
    if (this.#setup.target.major < 15) return;
    const rows = await this.#setup.targetSql<{ errors: number }[]>`
      SELECT (apply_error_count + sync_error_count)::int AS errors FROM pg_stat_subscription_stats WHERE subname = ${SUBSCRIPTION}`;
    if ((rows[0]?.errors ?? 0) > 0) {
      throw new Error(`built-in subscription reported ${rows[0]!.errors} apply/sync error(s); subscriber log:\n${this.#setup.target.recentLog()}`);
    }
  }

  async pause(): Promise<void> {
    await this.#setup.targetSql.unsafe(`ALTER SUBSCRIPTION ${SUBSCRIPTION} DISABLE`);
    // DISABLE only asks the workers to exit; the backlog must start after they did.
    await waitUntil(async () => {
      const [row] = await this.#setup.targetSql<{ n: number }[]>`SELECT count(pid)::int AS n FROM pg_stat_subscription WHERE subname = ${SUBSCRIPTION}`;
      return row!.n === 0;
    }, { what: 'the built-in apply workers to exit after DISABLE', timeoutMs: 30_000, pollMs: 50 });
    await waitSlotInactive(this.#setup.sourceSql, SUBSCRIPTION);
  }

  async resume(): Promise<void> {
    await this.#setup.targetSql.unsafe(`ALTER SUBSCRIPTION ${SUBSCRIPTION} ENABLE`);
  }

  async stop(): Promise<void> {
    if (!this.#started || this.#stopped) return;
    this.#stopped = true;
    const { targetSql, sourceSql, log } = this.#setup;
    try {
      // Disable and wait for the walsender to go, else DROP SUBSCRIPTION can
      // fail to drop a slot that is still marked active.
      await this.pause();
      await targetSql.unsafe(`DROP SUBSCRIPTION ${SUBSCRIPTION}`);
    } catch (error) {
      log(`DROP SUBSCRIPTION failed (${errorMessage(error)}); detaching the slot and dropping it directly`);
      await targetSql.unsafe(`ALTER SUBSCRIPTION ${SUBSCRIPTION} DISABLE`).catch(() => {});
      await targetSql.unsafe(`ALTER SUBSCRIPTION ${SUBSCRIPTION} SET (slot_name = NONE)`).catch(() => {});
      await targetSql.unsafe(`DROP SUBSCRIPTION IF EXISTS ${SUBSCRIPTION}`);
      await dropSlotIfExists(sourceSql, SUBSCRIPTION);
    }
    await sourceSql.unsafe(`DROP PUBLICATION IF EXISTS ${PUBLICATION}`);
  }

  async processes(): Promise<ProcessGroups> {
    const [workers, walsender] = await Promise.all([
      this.#setup.targetSql<{ pid: number }[]>`SELECT pid FROM pg_stat_subscription WHERE subname = ${SUBSCRIPTION} AND pid IS NOT NULL`,
      slotWalsenderPids(this.#setup.sourceSql, SUBSCRIPTION),
    ]);
    return { replicator: workers.map((w) => w.pid), walsender };
  }

  peakRssBytes(): number | undefined {
    return undefined;
  }
}
