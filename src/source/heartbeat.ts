/**
 * Heartbeat: while the stream is idle, a small transactional logical message
 * on the source (pg_logical_emit_message(true, 'pgtide.heartbeat', …)). It is
 * decoded as an empty transaction of this database, applied like any other,
 * and so moves the applied position, the slot (restart_lsn included, also
 * when other databases of the cluster write all the WAL) and the commit time
 * that `status` reports. Messages are sent whatever the publication holds.
 *
 * https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { fromServerError } from '../core/errors.js';

export const HEARTBEAT_PREFIX = 'pgtide.heartbeat';

export class Heartbeat {
  readonly #sql: postgres.Sql;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  #lastActivity = Date.now();
  #inFlight = false;
  #disabled = false;
  #warned = '';

  constructor(sql: postgres.Sql, intervalMs: number, logger: Logger) {
    this.#sql = sql;
    this.#intervalMs = intervalMs;
    this.#logger = logger;
    this.#disabled = intervalMs <= 0;
  }

  /** Something arrived from the source: no heartbeat is needed for another interval. */
  activity(): void {
    this.#lastActivity = Date.now();
  }

  /** Called while the stream is idle; emits at most one heartbeat per interval, without waiting for it. */
  idle(): void {
    if (this.#disabled || this.#inFlight || Date.now() - this.#lastActivity < this.#intervalMs) return;
    this.#inFlight = true;
    this.#lastActivity = Date.now();
    this.#sql.unsafe(`SELECT pg_logical_emit_message(true, '${HEARTBEAT_PREFIX}', now()::text)`).then(
      () => { this.#warned = ''; },
      (error: unknown) => {
        const mapped = fromServerError(error, 'source');
        if (mapped.sqlState === '42501') {
          this.#disabled = true;
          this.#logger.warn('heartbeat disabled: the source user may not run pg_logical_emit_message; lag shown by `pgtide status` may stay above 0 on an idle source (see docs/privileges.md)');
        } else if (mapped.message !== this.#warned) {
          this.#warned = mapped.message;
          this.#logger.warn({ code: mapped.code, sqlState: mapped.sqlState }, `heartbeat failed: ${mapped.message}; trying again next interval`);
        }
      },
    ).finally(() => { this.#inFlight = false; });
  }
}
