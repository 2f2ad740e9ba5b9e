/**
 * Prometheus metrics (prom-client), served on 127.0.0.1:<metrics.port>/metrics
 * when the config sets a port. Updated from engine hooks, so the data path
 * itself carries no metrics code.
 */
import http from 'node:http';
import { Registry, Gauge, Counter, collectDefaultMetrics } from 'prom-client';
import type { Lsn } from '../core/lsn.js';
import type { SequenceSyncReport } from '../sequences/sequence-sync.js';
import type { ConflictEvent } from '../apply/conflict-policy.js';

export class Metrics {
  readonly registry = new Registry();
  readonly #appliedLsn: Gauge;
  readonly #serverWalEnd: Gauge;
  readonly #lagBytes: Gauge;
  readonly #transactions: Gauge;
  readonly #changes: Gauge;
  readonly #sequenceValue: Gauge;
  readonly #sequenceRounds: Counter;
  readonly #copyRows: Gauge;
  readonly #conflicts: Counter;
  readonly #quarantined: Counter;

  constructor(subscription: string) {
    this.registry.setDefaultLabels({ subscription });
    collectDefaultMetrics({ register: this.registry, prefix: 'pgtide_process_' });
    const r = [this.registry];
    this.#appliedLsn = new Gauge({ name: 'pgtide_applied_lsn', help: 'End LSN of the last source transaction committed on the target', registers: r });
    this.#serverWalEnd = new Gauge({ name: 'pgtide_source_wal_end_lsn', help: 'Latest WAL end reported by the source walsender', registers: r });
    this.#lagBytes = new Gauge({ name: 'pgtide_lag_bytes', help: 'Source WAL end minus applied LSN', registers: r });
    this.#transactions = new Gauge({ name: 'pgtide_applied_transactions', help: 'Source transactions applied since start', registers: r });
    this.#changes = new Gauge({ name: 'pgtide_applied_changes', help: 'Row changes applied since start', registers: r });
    this.#sequenceValue = new Gauge({ name: 'pgtide_sequence_target_value', help: 'Target sequence value after the last sync', labelNames: ['sequence'], registers: r });
    this.#sequenceRounds = new Counter({ name: 'pgtide_sequence_sync_rounds_total', help: 'Sequence sync rounds', labelNames: ['ok'], registers: r });
    this.#copyRows = new Gauge({ name: 'pgtide_copy_rows', help: 'Rows copied by the initial copy', labelNames: ['table'], registers: r });
    this.#conflicts = new Counter({ name: 'pgtide_conflicts_total', help: 'Conflicts resolved by policy and logged in pgtide.conflict_log (counted once their batch committed)', labelNames: ['kind', 'resolution', 'table'], registers: r });
    this.#quarantined = new Counter({ name: 'pgtide_quarantined_total', help: 'Source transactions moved to pgtide.quarantine instead of being applied (docs/quarantine.md)', registers: r });
  }

  applied(info: { readonly durableLsn: Lsn; readonly serverWalEnd: Lsn; readonly transactions: number; readonly changes: number }): void {
    this.#appliedLsn.set(Number(info.durableLsn));
    this.#serverWalEnd.set(Number(info.serverWalEnd));
    this.#lagBytes.set(Math.max(0, Number(info.serverWalEnd - info.durableLsn)));
    this.#transactions.set(info.transactions);
    this.#changes.set(info.changes);
  }

  copyProgress(progress: readonly { readonly table: string; readonly rows: number }[]): void {
    for (const p of progress) this.#copyRows.set({ table: p.table }, p.rows);
  }

  quarantined(): void {
    this.#quarantined.inc();
  }

  conflicts(events: readonly ConflictEvent[]): void {
    for (const e of events) this.#conflicts.inc({ kind: e.kind, resolution: e.resolution, table: e.table });
  }

  sequences(report: SequenceSyncReport): void {
    this.#sequenceRounds.inc({ ok: String(report.ok) });
    for (const item of report.items) {
      if (item.targetAfter !== null) this.#sequenceValue.set({ sequence: item.qualifiedName }, Number(item.targetAfter));
    }
  }

  /** Serves /metrics on loopback; returns a function that closes the server. */
  serve(port: number, host = '127.0.0.1'): Promise<() => Promise<void>> {
    const server = http.createServer((req, res) => {
      if (req.url !== '/metrics') { res.writeHead(404).end(); return; }
      this.registry.metrics().then((body) => {
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
      }, (error: unknown) => { res.writeHead(500).end(String(error)); });
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(() => new Promise<void>((done) => server.close(() => done()))));
    });
  }
}
