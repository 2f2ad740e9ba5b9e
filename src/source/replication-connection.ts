/**
 * The walsender connection: a postgres.js client started with
 * `replication=database`, which accepts the replication commands
 * (IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT, START_REPLICATION) over the
 * simple query protocol.
 *
 * https://www.postgresql.org/docs/current/protocol-replication.html
 */
import postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import type { Duplex } from 'node:stream';
import { parseLsn, formatLsn, type Lsn } from '../core/lsn.js';
import { fromServerError, PgtideError } from '../core/errors.js';
import { TEXT_FORMAT_SETTINGS } from '../pg/text-format.js';
import { quoteIdent } from '../core/sql.js';
import { BoundedConnector, CLEANUP_MS, settleWithin } from '../pg/bounded.js';

export interface SystemIdentity {
  readonly systemId: string;
  readonly timeline: number;
  readonly walPosition: Lsn;
  readonly database: string;
}

export interface CreatedSlot {
  readonly slotName: string;
  readonly consistentPoint: Lsn;
  /** Valid only while this connection stays open and runs no other command. */
  readonly snapshotName: string | undefined;
}

export interface StartOptions {
  readonly slot: string;
  readonly startLsn: Lsn;
  /** Every publication to follow (publication_names). */
  readonly publications: readonly string[];
  readonly protocolVersion: 1 | 2 | 3 | 4;
  /** Stream large in-progress transactions (protocol ≥ 2). */
  readonly streaming: boolean;
  /** `origin 'none'` (PostgreSQL 16+): skip changes that were themselves replicated in. */
  readonly originNone?: boolean;
}

/** The highest pgoutput protocol version a server of this major speaks. */
export function protocolVersionFor(serverVersionNum: number): 1 | 2 | 3 | 4 {
  if (serverVersionNum >= 160000) return 4;
  if (serverVersionNum >= 150000) return 3;
  if (serverVersionNum >= 140000) return 2;
  return 1;
}

export class ReplicationConnection {
  readonly #sql: postgres.Sql;
  readonly #connector: BoundedConnector;

  private constructor(sql: postgres.Sql, connector: BoundedConnector) {
    this.#sql = sql;
    this.#connector = connector;
  }

  static open(url: string): ReplicationConnection {
    const connector = new BoundedConnector();
    const sql = openPostgres(url, 'replication', {
      ...connector.options,
      max: 1,
      // A walsender cannot run the type-lookup query postgres.js issues by default.
      fetch_types: false,
      idle_timeout: 0,
      max_lifetime: null,
      connect_timeout: 15,
      onnotice: () => {},
      connection: { ...TEXT_FORMAT_SETTINGS, replication: 'database', application_name: 'pgtide', client_encoding: 'UTF8' },
    } as postgres.Options<Record<string, postgres.PostgresType>>);
    return new ReplicationConnection(sql, connector);
  }

  async identifySystem(): Promise<SystemIdentity> {
    const [row] = await this.#run<{ systemid: string; timeline: string | number; xlogpos: string; dbname: string }>('IDENTIFY_SYSTEM');
    if (!row) throw new PgtideError('PROTOCOL_VIOLATION', 'IDENTIFY_SYSTEM returned no row');
    return { systemId: String(row.systemid), timeline: Number(row.timeline), walPosition: parseLsn(row.xlogpos), database: row.dbname };
  }

  /**
   * Creates a logical slot with pgoutput. With `exportSnapshot` the reply names a
   * snapshot that other sessions import with SET TRANSACTION SNAPSHOT: their view
   * of the data is exactly the slot's consistent point, so a copy made under it
   * plus the changes streamed after it is a consistent replica.
   */
  async createSlot(slot: string, options: { temporary: boolean; exportSnapshot: boolean }): Promise<CreatedSlot> {
    // The pre-15 syntax is still accepted by 15-18, so one form serves every supported source.
    const command = `CREATE_REPLICATION_SLOT ${quoteIdent(slot)}${options.temporary ? ' TEMPORARY' : ''} LOGICAL pgoutput ${options.exportSnapshot ? 'EXPORT_SNAPSHOT' : 'NOEXPORT_SNAPSHOT'}`;
    let rows: { slot_name: string; consistent_point: string; snapshot_name: string | null }[];
    try {
      rows = await this.#sql.unsafe(command);
    } catch (error) {
      const mapped = fromServerError(error, 'source');
      if (mapped.sqlState === '42710') {
        throw new PgtideError('SLOT_IN_USE', `replication slot "${slot}" already exists on the source, but this target has no record of it. Drop it with \`pgtide drop\` (or SELECT pg_drop_replication_slot('${slot}')) or choose another slot name.`, { sqlState: mapped.sqlState, cause: error });
      }
      if (mapped.sqlState === '53400') {
        throw new PgtideError('CONNECTION_FAILED', `the source has no free replication slot: raise max_replication_slots on the source and restart it.`, { sqlState: mapped.sqlState, cause: error });
      }
      throw mapped;
    }
    const row = rows[0];
    if (!row) throw new PgtideError('PROTOCOL_VIOLATION', 'CREATE_REPLICATION_SLOT returned no row');
    return { slotName: row.slot_name, consistentPoint: parseLsn(row.consistent_point), snapshotName: row.snapshot_name ?? undefined };
  }

  /**
   * Enters CopyBoth mode. The returned duplex delivers one CopyData payload per
   * 'data' event (read it in flowing mode: an async iterator would merge chunks
   * and lose the message boundaries); writes go back as CopyData.
   */
  async startReplication(options: StartOptions): Promise<Duplex> {
    // A comma-separated list of identifiers, quoted as in SQL (pgoutput splits it with SplitIdentifierString).
    const publications = options.publications.map(quoteIdent).join(',').replace(/'/g, "''");
    const params = [`proto_version '${options.protocolVersion}'`, `publication_names '${publications}'`, `messages 'true'`];
    if (options.streaming && options.protocolVersion >= 2) params.push(`streaming 'on'`);
    if (options.originNone && options.protocolVersion >= 4) params.push(`origin 'none'`);
    const command = `START_REPLICATION SLOT ${quoteIdent(options.slot)} LOGICAL ${formatLsn(options.startLsn)} (${params.join(', ')})`;
    try {
      return (await this.#sql.unsafe(command).writable()) as Duplex;
    } catch (error) {
      const mapped = fromServerError(error, 'source');
      if (mapped.sqlState === '42704') {
        throw new PgtideError('SLOT_MISSING', `replication slot "${options.slot}" does not exist on the source. If it was dropped, the changes since then are lost to this slot: run \`pgtide drop\` on this config and start again to re-copy.`, { sqlState: mapped.sqlState, cause: error });
      }
      if (mapped.sqlState === '55006') {
        throw new PgtideError('SLOT_IN_USE', `replication slot "${options.slot}" is in use by another process (is another pgtide running with this config?). Stop it, or wait: pgtide retries.`, { sqlState: mapped.sqlState, retryable: true, cause: error });
      }
      throw mapped;
    }
  }

  /**
   * Ends the connection within a time limit, then destroys its socket: ending
   * only sends FIN, and a socket paused for backpressure would stay open with
   * the walsender blocked writing to it, holding the slot (src/pg/bounded.ts).
   */
  async close(): Promise<void> {
    await settleWithin(this.#sql.end({ timeout: 1 }), CLEANUP_MS);
    this.#connector.destroyAll();
  }

  async #run<T extends object>(command: string): Promise<T[]> {
    try {
      return await this.#sql.unsafe<T[]>(command);
    } catch (error) {
      throw fromServerError(error, 'source');
    }
  }
}
