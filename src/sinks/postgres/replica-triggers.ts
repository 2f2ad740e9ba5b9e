/**
 * Target tables with row triggers marked ENABLE ALWAYS or ENABLE REPLICA.
 *
 * Such a trigger fires under session_replication_role = replica, so it fires
 * for pgtide's writes as for the built-in worker's; it exists to see every
 * change, in the order the source made them. Two of pgtide's optimizations
 * would hide that order from it, so the apply writer turns both off for these
 * tables:
 *
 * - net-effect folding (four changes to one key become one, or none);
 * - reordering across tables: a batch queues changes per table and sends each
 *   table's queue whole, so a trigger reading (or writing) another table
 *   would see that table ahead of or behind the source. A change to such a
 *   table, and the first change to any table after it, first sends
 *   everything queued before it.
 *
 * Within the table, UPDATE and DELETE runs hold one change each: a joined
 * UPDATE/DELETE visits rows in plan order, not the order of its key array.
 * (INSERT … SELECT FROM unnest inserts in array order, so insert runs stay.)
 */
import type { Logger } from 'pino';
import type { TargetTable } from './table-catalog.js';

/** Tables already reported, per subscription: the note is logged once per table per process. */
const reported = new Set<string>();

export function hasReplicaTriggers(table: TargetTable): boolean {
  return table.facts.replicaTriggers;
}

export function noteReplicaTriggers(logger: Logger, subscription: string, table: TargetTable): void {
  const id = `${subscription}\u0001${table.relation.qualifiedName}`;
  if (reported.has(id)) return;
  reported.add(id);
  logger.info({ table: table.relation.qualifiedName },
    `${table.relation.qualifiedName} has ENABLE ALWAYS or ENABLE REPLICA row triggers on the target: net-effect folding is off for it, and its changes are applied one at a time in source order relative to every other table`);
}
