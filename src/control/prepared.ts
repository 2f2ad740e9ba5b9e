/**
 * What preparing a subscription hands to its streaming attempts, whatever
 * the target kind: where to stream from, what the gate needs, how to record
 * an acknowledgement, how to check the slot, and which sink to open.
 */
import type { Lsn } from '../core/lsn.js';
import type { TableGateState } from '../core/table-sync.js';
import type { PublishedTable } from '../source/source-catalog.js';
import type { Heartbeat } from '../source/heartbeat.js';
import type { NdjsonStateFile } from '../sinks/ndjson/state-file.js';
import type { GuardContext } from './slot-guardian.js';

/** The target-side state an attempt reads and writes besides the sink. */
export interface AttemptState {
  /** A fresh map per attempt: DDL apply keeps it current (renamed, created and dropped tables). */
  gateMap(): Promise<Map<string, TableGateState>>;
  /** Records a keepalive position before it is acknowledged. */
  recordAck(lsn: Lsn): Promise<void>;
}

export type SinkChoice =
  | { readonly kind: 'postgres'; readonly url: string; readonly originName: string; readonly targetDatabaseOid: number }
  | { readonly kind: 'ndjson'; readonly path: string; readonly state: NdjsonStateFile };

export interface Prepared {
  readonly state: AttemptState;
  readonly startLsn: Lsn;
  readonly protocolVersion: 1 | 2 | 3 | 4;
  readonly publications: readonly string[];
  readonly slot: string;
  readonly tables: readonly PublishedTable[];
  readonly guard: (identity: GuardContext['identity']) => GuardContext;
  readonly heartbeat: Heartbeat;
  readonly sink: SinkChoice;
}
