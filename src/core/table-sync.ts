/**
 * The sync state of one published table, shared by the gate that reads it and
 * the state store that keeps it (pgtide.table_state).
 */
import type { Lsn } from './lsn.js';

export type TableSyncState = 'init' | 'copying' | 'ready';

export interface TableGateState {
  readonly state: TableSyncState;
  readonly syncLsn: Lsn;
}

export function tableKey(schema: string, name: string): string {
  return `${schema}\u0000${name}`;
}
