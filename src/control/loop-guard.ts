/**
 * At start: refuse an edge that closes a loop with an edge already set up in
 * the other direction, when this one would forward what the other applies.
 *
 * The reverse edge (this target → this source) keeps its state in the source
 * database's `pgtide` schema: its name, its slot and the system identifier of
 * the cluster it reads. When that cluster is this target's and its slot there
 * reads this target database, every change this edge applies would be sent
 * back by the reverse edge, and every change the reverse edge applies would
 * come back here unless this edge's `origins` drops the reverse edge's origin.
 * The built-in equivalent is CREATE SUBSCRIPTION's warning for origin = any
 * when the publisher itself subscribes; pgtide refuses, because the echo
 * turns into a duplicate key that stops apply. `pgtide check` finds the same
 * from the configs, before anything starts (topology-check.ts).
 */
import type postgres from 'postgres';
import type { Logger } from 'pino';
import { PgtideError } from '../core/errors.js';
import type { OriginMatcher } from '../apply/origin-policy.js';

interface ReverseEdge { readonly name: string; readonly slot_name: string; readonly source_system_id: string | null }

export async function refuseLoopBack(source: postgres.Sql, target: postgres.Sql, origins: OriginMatcher, logger: Logger): Promise<void> {
  if (origins.policy.kind === 'none') return;
  let reverse: ReverseEdge[];
  let sourceDbOid: number;
  try {
    const [present] = await source.unsafe<{ ok: boolean; oid: number }[]>(`SELECT to_regclass('pgtide.subscription') IS NOT NULL AS ok, (SELECT oid::int FROM pg_database WHERE datname = current_database()) AS oid`);
    if (!present?.ok) return;
    sourceDbOid = present.oid;
    reverse = await source.unsafe<ReverseEdge[]>(`SELECT name, slot_name, source_system_id FROM pgtide.subscription WHERE start_lsn IS NOT NULL`);
  } catch (error) {
    // A source user without access to another subscription's state: the check is a safety net, not a requirement.
    logger.debug({ error: error instanceof Error ? error.message : String(error) }, 'could not read the source database\'s pgtide state to look for a reverse edge');
    return;
  }
  if (reverse.length === 0) return;
  const [here] = await target.unsafe<{ system_id: string | null; database: string }[]>(
    `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system_id, current_database() AS database`).catch(() => []);
  if (!here?.system_id) return;
  for (const edge of reverse) {
    if (edge.source_system_id !== here.system_id) continue;
    const [slot] = await target.unsafe<{ database: string | null }[]>(`SELECT database FROM pg_replication_slots WHERE slot_name = $1`, [edge.slot_name]).catch(() => []);
    if (slot?.database !== here.database) continue;
    const origin = `pgtide_${edge.name}_${sourceDbOid}`;
    if (!origins.accepts(origin)) continue;
    throw new PgtideError('TOPOLOGY_LOOP', `subscription "${edge.name}" already replicates this target database into this source database (its slot "${edge.slot_name}" reads the target), so with origins: ${origins.policy.kind} every change would go round in a loop: what "${edge.name}" applies (origin ${origin}) would be sent back, and what this edge applies would be sent back by "${edge.name}". Set \`origins: none\` in this config and in the config of "${edge.name}" (docs/topologies.md), then start again.`);
  }
}
