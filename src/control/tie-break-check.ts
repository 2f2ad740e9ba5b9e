/**
 * `pgtide check`: the tie-break orders of the time-based policies, across
 * the configs of a topology (docs/conflicts.md, "Time-based policies").
 *
 * Each config's `conflicts.nodeOrder` names writers as its target sees them:
 * `local` (the target node itself) and the subscriptions that write into it
 * (each one its source node). Two nodes converge on a tie only if every
 * config that ranks both ranks them the same way, and if both sides of a
 * two-way pair rank both: with a writer unlisted the local row stays on
 * each node, so each keeps its own.
 */
import { conflictSettings } from './conflict-config.js';
import { judgesByTime, LOCAL_WRITER } from '../apply/conflict-time.js';
import type { PgtideConfig } from './config.js';
import type { TopologyEdge } from './topology-check.js';

export interface TieBreakEdge {
  readonly edge: TopologyEdge;
  readonly config: PgtideConfig;
}

/** The problems found, one sentence each; empty when the orders agree. */
export function tieBreakProblems(edges: readonly TieBreakEdge[]): string[] {
  const problems: string[] = [];
  /** "a b" → the edge label that ranked node a before node b. */
  const before = new Map<string, string>();
  const labelOf = new Map<string, string>();
  for (const { edge } of edges) {
    labelOf.set(edge.source.id, edge.source.label);
    labelOf.set(edge.target.id, edge.target.label);
  }
  const timed = edges.filter(({ config }) => judgesByTime(conflictSettings(config.conflicts)));
  for (const { edge, config } of timed) {
    const order = conflictSettings(config.conflicts).nodeOrder ?? [];
    const nodes = order.map((writer) => {
      if (writer === LOCAL_WRITER) return edge.target.id;
      return edges.find((e) => e.edge.subscription === writer && e.edge.target.id === edge.target.id)?.edge.source.id;
    }).filter((id): id is string => id !== undefined);
    for (let i = 0; i < nodes.length; i++) {
      for (let j = i + 1; j < nodes.length; j++) {
        const [a, b] = [nodes[i]!, nodes[j]!];
        if (a === b) continue;
        const other = before.get(`${b} ${a}`);
        if (other !== undefined) {
          problems.push(`${edge.label} ranks ${labelOf.get(a)} before ${labelOf.get(b)} on equal commit times, ${other} the other way round: the two nodes would keep different rows`);
        }
        before.set(`${a} ${b}`, edge.label);
      }
    }
    const reverse = edges.find((e) => e.edge.source.id === edge.target.id && e.edge.target.id === edge.source.id);
    if (reverse && !(order.includes(LOCAL_WRITER) && order.includes(edge.subscription))) {
      problems.push(`${edge.label} uses a time-based policy in a two-way pair but its conflicts.nodeOrder does not rank both "${LOCAL_WRITER}" and "${edge.subscription}": on equal commit times each node would keep its own row`);
    }
  }
  return problems;
}
