/**
 * `pgtide check --config a.yaml --config b.yaml …`: the configs of every edge
 * of a topology, checked together before any of them starts. Each server is
 * asked who it is (system identifier, start time, database OID), so two URLs
 * that name one database in different ways are one node; nothing is written.
 * Refuses (TOPOLOGY_LOOP, exit 1) a topology where a change can come back to
 * a node or reach one twice (control/topology-check.ts). With `--keys`, also
 * refuses (KEYSPACE_OVERLAP) keys that two sources writing into one target
 * table both hold (control/keyspace-check.ts).
 */
import type { Command } from 'commander';
import type postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import { parseConninfo } from '../pg/conninfo.js';
import { originName, type PgtideConfig } from '../control/config.js';
import { postgresTargetUrl } from '../control/target-config.js';
import { serverIdentity } from '../control/slot-guardian.js';
import { topologyError, topologyProblems, type TopologyEdge, type TopologyNode } from '../control/topology-check.js';
import { OriginMatcher, originPolicy } from '../apply/origin-policy.js';
import { CLEANUP_MS, settleWithin } from '../pg/bounded.js';
import { checkKeySpaces, keyspaceError } from '../control/keyspace-check.js';
import { checkCommitTimestampsAt, needsCommitTimestampsFor } from '../control/commit-timestamp-check.js';
import { tieBreakProblems } from '../control/tie-break-check.js';
import { PgtideError } from '../core/errors.js';

function label(url: string): string {
  const info = parseConninfo(url);
  return `${info.host}:${info.port}/${info.dbname}`;
}

async function node(url: string, what: 'source' | 'target', cache: Map<string, Promise<TopologyNode & { readonly oid: number }>>): Promise<TopologyNode & { readonly oid: number }> {
  let found = cache.get(url);
  if (!found) {
    found = (async () => {
      const sql: postgres.Sql = openPostgres(url, 'admin', { max: 1, connect_timeout: 15, onnotice: () => {} });
      try {
        const identity = await serverIdentity(sql, what);
        return { id: `${identity.systemId ?? '?'}/${identity.startedAt}/${identity.databaseOid}`, label: label(url), oid: identity.databaseOid };
      } finally {
        await settleWithin(sql.end({ timeout: 2 }), CLEANUP_MS);
      }
    })();
    cache.set(url, found);
  }
  return found;
}

export async function checkTopology(configs: readonly { readonly file: string; readonly config: PgtideConfig }[], options: { readonly keys?: boolean } = {}): Promise<string> {
  const cache = new Map<string, Promise<TopologyNode & { readonly oid: number }>>();
  const edges: TopologyEdge[] = [];
  for (const { file, config } of configs) {
    const [source, target] = await Promise.all([node(config.source.url, 'source', cache), node(postgresTargetUrl(config, 'pgtide check'), 'target', cache)]);
    edges.push({
      label: `${config.name} (${file})`, subscription: config.name, source, target,
      origins: new OriginMatcher(originPolicy(config.origins)), originName: originName(config, target.oid),
    });
  }
  const problems = topologyProblems(edges);
  if (problems.length > 0) throw topologyError(problems);
  const lines = edges.map((e) => `${e.label}: ${e.source.label} → ${e.target.label}, origins ${e.origins.policy.kind}, applies as ${e.originName}`);
  lines.push(`ok: ${edges.length} edge(s); no change can come back to a node it passed or reach a node twice`);
  for (const { config } of configs) await checkCommitTimestampsAt(postgresTargetUrl(config, 'pgtide check'), config);
  const ties = tieBreakProblems(configs.map(({ config }, i) => ({ edge: edges[i]!, config })));
  if (ties.length > 0) throw new PgtideError('CONFIG_INVALID', `the conflict tie-break orders of these configs disagree:\n${ties.map((t) => `  - ${t}`).join('\n')}\nSee docs/conflicts.md (Time-based policies).`);
  if (configs.some(({ config }) => needsCommitTimestampsFor(config))) lines.push('ok: track_commit_timestamp is on at every target whose conflict settings need it');
  if (options.keys) {
    const keys = await checkKeySpaces(configs.map(({ config }, i) => ({ label: edges[i]!.label, config, targetId: edges[i]!.target.id, targetLabel: edges[i]!.target.label })));
    if (keys.overlaps.length > 0) throw keyspaceError(keys.overlaps);
    lines.push(...keys.lines, 'ok: no key is held by two sources that write into one target table');
  }
  return lines.join('\n');
}

export function registerCheckCommand(program: Command, load: (path: string) => PgtideConfig): void {
  program.command('check')
    .description('check the configs of a topology (one per edge) together: refuse one where a change can come back to its node')
    .option('-c, --config <file>', 'config file of one edge (repeat for every edge)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--keys', 'also read the keys of tables that several edges write into one target database, and refuse keys two sources both hold')
    .action(async (options: { config: string[]; keys?: boolean }) => {
      const files = options.config.length > 0 ? options.config : ['pgtide.yaml'];
      const report = await checkTopology(files.map((file) => ({ file, config: load(file) })), { keys: options.keys === true });
      process.stdout.write(report + '\n');
    });
}
