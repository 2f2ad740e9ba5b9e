/**
 * `pgtide sequences …`: the sequence commands.
 *
 *   sync       one exact, forward-only refresh — the cutover step after writes on the source stopped
 *   install    the multi-primary functions (pgtide.prefixed_nextval) and this node's id
 *   partition  INCREMENT BY N / residue K for node K of N
 *   check      which nodes' sequences can hand out the same value
 */
import { Command, InvalidArgumentError } from 'commander';
import postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import { isConninfoParameter, parseConninfo } from '../pg/conninfo.js';
import type { PgtideConfig } from '../control/config.js';
import { PgtideError, fromServerError, redact } from '../core/errors.js';
import type { SequenceSyncReport, SequenceSyncItem } from '../sequences/sequence-sync.js';
import { createSequenceSync } from '../control/sequence-sync-job.js';
import { discoverSequences, SequenceReader } from '../sequences/sequence-catalog.js';
import {
  installSharedSequenceFunctions, partitionSequences, checkCollisions,
  LOCAL_BITS, NODE_BITS, MAX_NODE_ID, type CollisionNode,
} from '../sequences/shared-sequences.js';
import type { QualifiedName } from '../core/sql.js';
import { postgresTargetUrl } from '../control/target-config.js';

const DEFAULT_CONFIG = 'pgtide.yaml';

type Out = (text: string) => void;

function wholeNumber(name: string, min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number >= ${min}.`);
    return n;
  };
}

/** Left-aligned text table; the first row is the header. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, [...cell].length); });
  const line = (row: readonly string[]): string => row.map((cell, i) => cell + ' '.repeat((widths[i] ?? 0) - [...cell].length)).join('  ').trimEnd();
  const [header, ...body] = rows;
  if (!header) return '';
  return [line(header), line(header.map((_, i) => '-'.repeat(widths[i] ?? 0))), ...body.map(line)].join('\n');
}

function value(v: bigint | null, called: boolean | null): string {
  if (v === null) return '-';
  return called === false ? `${v} (not called)` : String(v);
}

/** The table `pgtide sequences sync` prints. */
export function formatSyncReport(report: SequenceSyncReport): string {
  const rows: string[][] = [['sequence', 'status', 'source', 'target before', 'target after']];
  const order = (item: SequenceSyncItem): number => (item.status === 'advanced' ? 1 : item.status === 'unchanged' || item.status === 'target_ahead' ? 2 : 0);
  for (const item of [...report.items].sort((a, b) => order(a) - order(b) || a.qualifiedName.localeCompare(b.qualifiedName))) {
    rows.push([item.qualifiedName, item.status.replace(/_/g, ' '), value(item.sourceValue, item.sourceIsCalled), value(item.targetBefore, item.targetBeforeIsCalled), value(item.targetAfter, item.targetAfterIsCalled)]);
  }
  const lines = [report.items.length > 0 ? formatTable(rows) : 'no sequences in scope'];
  const details = report.items.filter((i) => i.detail).map((i) => `  ${i.qualifiedName}: ${i.detail}`);
  if (details.length > 0) lines.push('', 'notes:', ...details);
  if (report.mismatches.length > 0) {
    lines.push('', 'definition mismatches:');
    for (const m of report.mismatches) {
      lines.push(`  ${m.qualifiedName}: ${m.kind.replace(/_/g, ' ')} — source ${m.source}, target ${m.target ?? '(missing)'}${m.fixed ? ' — fixed' : m.error ? ` — fix failed: ${m.error}` : ' — not fixed (use --fix-definitions)'}`);
    }
  }
  if (report.readNote) lines.push('', `note: ${report.readNote}`);
  for (const t of report.missingTables) lines.push(`note: table ${t.schema}.${t.name} from the config does not exist on the source`);
  const advanced = report.items.filter((i) => i.status === 'advanced').length;
  lines.push('', `${advanced} of ${report.items.length} sequence(s) moved forward in ${report.durationMs} ms; targets are never moved back.`);
  return lines.join('\n');
}

function labelFor(url: string): string {
  try {
    const parsed = parseConninfo(url);
    return `${parsed.host}:${parsed.port}/${parsed.dbname}`;
  } catch {
    return redact(url);
  }
}

/**
 * `--url name=<connection string>` or just the connection string (labelled host:port/db), in
 * either libpq form: `host=a dbname=b` starts with a libpq parameter, so it is not a label.
 */
export function parseNodeArgument(arg: string): CollisionNode {
  const eq = arg.indexOf('=');
  const scheme = arg.indexOf('://');
  const prefix = eq > 0 ? arg.slice(0, eq).trim() : '';
  if (eq > 0 && (scheme < 0 || eq < scheme) && !isConninfoParameter(prefix)) return { label: prefix, url: arg.slice(eq + 1) };
  return { label: labelFor(arg), url: arg };
}

async function withDatabase<T>(url: string, what: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = openPostgres(url, 'catalog', { max: 1, onnotice: () => {}, connection: { application_name: 'pgtide sequences' } });
  try {
    return await fn(sql);
  } catch (error) {
    throw fromServerError(error, what);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * For each sequence, the furthest value already handed out on the other
 * databases (highest for ascending, lowest for descending), so partitioning
 * restarts beyond values that exist elsewhere.
 */
async function furthestValues(urls: readonly string[], sequences: readonly QualifiedName[], ascending: ReadonlyMap<string, boolean>, qualifiedNames: readonly string[]): Promise<Map<string, bigint>> {
  const beyond = new Map<string, bigint>();
  for (const url of urls) {
    await withDatabase(url, 'source', async (sql) => {
      const read = await new SequenceReader(sql, sequences, 'source').read();
      read.readings.forEach((reading, i) => {
        const key = qualifiedNames[i]!;
        if (!reading.present || reading.lastValue === null || !reading.definition) return;
        const handed = reading.isCalled === false ? reading.lastValue - reading.definition.increment : reading.lastValue;
        const previous = beyond.get(key);
        const up = ascending.get(key) ?? true;
        if (previous === undefined || (up ? handed > previous : handed < previous)) beyond.set(key, handed);
      });
    });
  }
  return beyond;
}

export function registerSequencesCommands(program: Command, load: (configPath: string) => PgtideConfig, out: Out = (text) => { process.stdout.write(text); }): void {
  const sequences = program.command('sequences').description('sync sequences to the target, and make them safe for several primaries');

  sequences.command('sync')
    .description('bring every target sequence to the source value (+ sequences.ahead) once, forward-only; run it at cutover after writes on the source stopped')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG)
    .option('--fix-definitions', 'create missing target sequences and ALTER mismatched ones to the source definition')
    .option('--ahead <n>', 'increments to stay ahead of the source (default: sequences.ahead)', wholeNumber('--ahead', 0))
    .action(async (options: { config: string; fixDefinitions?: boolean; ahead?: number }) => {
      const config = load(options.config);
      const sync = createSequenceSync(config, { ahead: options.ahead, fixDefinitions: options.fixDefinitions === true });
      let report: SequenceSyncReport;
      try {
        report = await sync.syncOnce();
      } finally {
        await sync.close();
      }
      out(formatSyncReport(report) + '\n');
      if (!report.ok) {
        const bad = report.items.filter((i) => !['advanced', 'unchanged', 'target_ahead'].includes(i.status)).length;
        const open = report.mismatches.filter((m) => !m.fixed).length;
        throw new PgtideError('SEQUENCE_MISMATCH', `${bad} sequence(s) not synced and ${open} definition mismatch(es) not fixed (listed above). Fix them (or rerun with --fix-definitions) before switching writes to the target.`);
      }
    });

  sequences.command('install')
    .description(`install pgtide.prefixed_nextval(seq) (values = node id << ${LOCAL_BITS} | local value) and set this node's id`)
    .option('-c, --config <file>', 'config file (installs on its target unless --database-url is given)')
    .option('--database-url <url>', 'install into this database')
    .option('--node-id <n>', `this node's id, 1..${MAX_NODE_ID} (default: keep the current one, else derive from the system identifier)`, wholeNumber('--node-id', 1))
    .option('--force', 'change a node id that is already set')
    .action(async (options: { config?: string; databaseUrl?: string; nodeId?: number; force?: boolean }) => {
      const url = options.databaseUrl ?? postgresTargetUrl(load(options.config ?? DEFAULT_CONFIG), 'pgtide sequences install');
      const result = await withDatabase(url, 'target', (sql) => installSharedSequenceFunctions(sql, { nodeId: options.nodeId, force: options.force }));
      const how = result.source === 'given' ? 'as given' : result.source === 'existing' ? 'already set' : 'derived from the system identifier — set it explicitly if this cluster was cloned from another node';
      out([
        `installed pgtide.prefixed_nextval() in ${labelFor(url)}`,
        `node id: ${result.nodeId} (${how})`,
        `layout: 1 sign bit, ${NODE_BITS} node bits (ids 1..${MAX_NODE_ID}), ${LOCAL_BITS} local bits; a local value beyond 2^${LOCAL_BITS}-1 raises SQLSTATE 2200H`,
        `use it: ALTER TABLE t ALTER COLUMN id SET DEFAULT pgtide.prefixed_nextval('t_id_seq');`,
      ].join('\n') + '\n');
    });

  sequences.command('partition')
    .description('INCREMENT BY N and restart each sequence at the next value ≡ K (mod N): node K (1..N) of N never hands out another node\'s values')
    .requiredOption('--node <k>', 'this node, 1..N', wholeNumber('--node', 1))
    .requiredOption('--of <n>', 'number of nodes', wholeNumber('--of', 1))
    .option('-c, --config <file>', 'config file: partitions the sequences of its tables on its target, restarting beyond the source\'s values')
    .option('--database-url <url>', 'partition this database (all its sequences unless --config is given)')
    .action(async (options: { node: number; of: number; config?: string; databaseUrl?: string }) => {
      const config = options.config !== undefined || options.databaseUrl === undefined ? load(options.config ?? DEFAULT_CONFIG) : undefined;
      const url = options.databaseUrl ?? postgresTargetUrl(config!, 'pgtide sequences partition');
      const others = config ? [config.source.url, postgresTargetUrl(config, 'pgtide sequences partition')].filter((u) => u !== url) : [];
      const results = await withDatabase(url, 'target', async (sql) => {
        const discovery = await discoverSequences(sql, config
          ? { tables: config.tables ?? 'all', include: config.sequences.include }
          : { tables: 'all', everySequence: true }, 'target');
        const names = discovery.sequences.map((s) => s.qualifiedName);
        const ascending = new Map(discovery.sequences.map((s) => [s.qualifiedName, s.definition.increment > 0n]));
        const beyond = await furthestValues(others, discovery.sequences, ascending, names);
        return partitionSequences(sql, discovery.sequences, { node: options.node, of: options.of, beyond });
      });
      const rows = [['sequence', 'increment', 'next value before', 'next value after', 'changed']];
      for (const r of results) rows.push([r.qualifiedName, `${r.incrementBefore} → ${r.incrementAfter}`, String(r.nextBefore), String(r.nextAfter), r.changed ? 'yes' : 'no (already partitioned)']);
      out(`${results.length > 0 ? formatTable(rows) : 'no sequences in scope'}\n\nnode ${options.node} of ${options.of}: values v with v mod ${options.of} = ${options.node % options.of}${others.length > 0 ? '; restarted beyond the other database\'s values' : ''}.\n`);
    });

  sequences.command('check')
    .description('report sequences on different nodes that can hand out the same value')
    .option('--url <url>', 'a node, as postgres://… or label=postgres://… (repeat for each node)', (v: string, previous: string[]) => [...previous, v], [] as string[])
    .action(async (options: { url: string[] }) => {
      if (options.url.length < 2) throw new PgtideError('CONFIG_INVALID', 'pass at least two nodes: pgtide sequences check --url postgres://a… --url postgres://b…');
      const report = await checkCollisions(options.url.map(parseNodeArgument));
      const lines = report.nodes.map((n) => `${n.label}: ${n.sequences} sequence(s), node id ${n.nodeId ?? 'not set'}`);
      if (report.findings.length === 0) lines.push('', 'no collisions: no two nodes can hand out the same value.');
      else {
        lines.push('', `${report.findings.length} possible collision(s):`);
        for (const f of report.findings) lines.push(`  [${f.kind.replace(/_/g, ' ')}] ${f.detail}`);
      }
      out(lines.join('\n') + '\n');
      if (report.findings.length > 0) {
        throw new PgtideError('SEQUENCE_MISMATCH', `${report.findings.length} possible sequence collision(s) between the nodes (listed above).`);
      }
    });
}
