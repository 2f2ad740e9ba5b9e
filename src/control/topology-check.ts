/**
 * Whether a set of pgtide edges (one config each) is loop-free: no change can
 * come back to a node it already passed, and none reaches a node twice.
 *
 * A change written by an application on node N has no origin. An edge S → T
 * forwards a change from S when its `origins` setting accepts the change's
 * origin on S, and T then holds it under the edge's own origin
 * (`pgtide_<name>_<target database OID>`), which is what the next edge out of
 * T judges. Following every change from every node along every edge that
 * forwards it finds each path it can take; a path that enters a node it
 * already passed is a loop (two edges with `origins: any` between two nodes
 * echo every change for ever), and two paths from one node into one node
 * deliver the change twice (a diamond), which duplicates rows or collides.
 *
 * Pure: the nodes are identified by the caller (check-command.ts reads each
 * server's system identifier and database OID), so tests need no server.
 */
import { PgtideError } from '../core/errors.js';
import type { OriginMatcher } from '../apply/origin-policy.js';

export interface TopologyNode {
  /** Identity of one database: system identifier and database OID. */
  readonly id: string;
  /** For messages: host:port/dbname as the config wrote it. */
  readonly label: string;
}

export interface TopologyEdge {
  /** The config's `name`, or its file, for messages. */
  readonly label: string;
  readonly subscription: string;
  readonly source: TopologyNode;
  readonly target: TopologyNode;
  readonly origins: OriginMatcher;
  /** The origin the edge applies under on its target. */
  readonly originName: string;
}

export interface TopologyProblem {
  readonly kind: 'loop' | 'twice' | 'same_subscription';
  readonly message: string;
}

/** Paths longer than this are not followed (a path without repeated nodes is never longer than the edge count). */
const MAX_EDGES = 64;

export function topologyProblems(edges: readonly TopologyEdge[]): TopologyProblem[] {
  if (edges.length > MAX_EDGES) {
    throw new PgtideError('CONFIG_INVALID', `pgtide check follows at most ${MAX_EDGES} edges; ${edges.length} were given.`);
  }
  const problems: TopologyProblem[] = [];
  const seen = new Set<string>();
  const add = (kind: TopologyProblem['kind'], key: string, message: string) => {
    if (seen.has(key)) return;
    seen.add(key);
    problems.push({ kind, message });
  };

  // Edges that share a subscription name and a target database share their state rows there.
  const byState = new Map<string, TopologyEdge>();
  for (const edge of edges) {
    const key = `${edge.target.id}\u0000${edge.subscription}`;
    const other = byState.get(key);
    if (other) {
      add('same_subscription', `same:${key}`, `${other.label} and ${edge.label} both write into ${edge.target.label} under the subscription name "${edge.subscription}": they would share one slot name, origin and state. Give each edge its own \`name\`.`);
    } else {
      byState.set(key, edge);
    }
  }

  const nodes = new Map<string, TopologyNode>();
  for (const edge of edges) { nodes.set(edge.source.id, edge.source); nodes.set(edge.target.id, edge.target); }
  for (const birth of nodes.values()) {
    /** Paths (edge lists) by which a change written on `birth` reaches each node. */
    const arrivals = new Map<string, TopologyEdge[][]>();
    const walk = (at: TopologyNode, origin: string | undefined, path: readonly TopologyEdge[], passed: ReadonlySet<string>) => {
      for (const edge of edges) {
        if (edge.source.id !== at.id || !edge.origins.accepts(origin)) continue;
        const next = [...path, edge];
        if (passed.has(edge.target.id)) {
          const cycle = next.map((e) => e.label).sort().join(',');
          add('loop', `loop:${birth.id}:${cycle}`, `a change written on ${birth.label} comes back to ${edge.target.label}: ${describePath(birth, next)}. ${advice(next)}`);
          continue;
        }
        const list = arrivals.get(edge.target.id) ?? [];
        list.push(next);
        arrivals.set(edge.target.id, list);
        walk(edge.target, edge.originName, next, new Set([...passed, edge.target.id]));
      }
    };
    walk(birth, undefined, [], new Set([birth.id]));
    for (const [nodeId, paths] of arrivals) {
      if (paths.length < 2) continue;
      const target = nodes.get(nodeId)!;
      add('twice', `twice:${birth.id}:${nodeId}`, `a change written on ${birth.label} reaches ${target.label} ${paths.length} times: ${paths.slice(0, 3).map((p) => describePath(birth, p)).join('; and ')}. Let only one of these paths forward it: set \`origins: none\` (or a deny list) on the edges after the first hop.`);
    }
  }
  return problems;
}

function describePath(birth: TopologyNode, path: readonly TopologyEdge[]): string {
  return [birth.label, ...path.map((e) => `(${e.label}, origins ${e.origins.policy.kind}) → ${e.target.label}`)].join(' ');
}

function advice(path: readonly TopologyEdge[]): string {
  const forwarding = path.slice(1).filter((e) => e.origins.policy.kind !== 'none').map((e) => e.label);
  const names = [...new Set(forwarding)];
  return names.length > 0
    ? `Set \`origins: none\` on ${names.join(', ')} (or deny the origins of the edges into ${names.length > 1 ? 'their sources' : 'its source'}), so that what a node received by replication is not sent on around the cycle.`
    : 'Set `origins: none` on the edges of the cycle.';
}

/** The error `pgtide check` stops with. */
export function topologyError(problems: readonly TopologyProblem[]): PgtideError {
  return new PgtideError('TOPOLOGY_LOOP', `the topology of these configs is not safe:\n${problems.map((p) => `  - ${p.message}`).join('\n')}`);
}
