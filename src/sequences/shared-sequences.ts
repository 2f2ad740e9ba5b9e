/**
 * Sequences that stay unique when several primaries write at once.
 *
 * Two schemes, both plain SQL/plpgsql (no C extension):
 *
 * 1. Prefixed values. `pgtide.prefixed_nextval(seq)` returns
 *      node_id * 2^53 + nextval(seq)
 *    in a bigint laid out as
 *      bit 63      sign, always 0 (values are positive)
 *      bits 62–53  node id, 10 bits: 1..1023 (0 is left to values made before
 *                  prefixing, which are all below 2^53)
 *      bits 52–0   local value from the ordinary sequence, 0..2^53-1
 *    so each node owns a disjoint block of 2^53 (≈ 9.007e15) values. A local
 *    value outside 0..2^53-1 raises SQLSTATE 2200H
 *    (sequence_generator_limit_exceeded) instead of spilling into the next
 *    node's block. The node id lives in the one-row table `pgtide.node`,
 *    written by `pgtide.set_node_id(n)`; it is not derived at call time so
 *    that a restore or a clone keeps handing out the values it was given.
 *
 * 2. Partitioned sequences. On node K of N every sequence gets INCREMENT BY N
 *    and restarts at the next value congruent to K (mod N) beyond its current
 *    value (and beyond values the other nodes already reached, when given).
 *    K is 1-based: node K hands out values v with v mod N = K mod N, so with
 *    N = 2 node 1 gets odd values and node 2 even ones.
 *
 * checkCollisions() reads the sequences of several nodes and reports every
 * pair that can hand out the same value.
 *
 * Size: most of the file is the SQL of the two schemes and the collision check,
 * which share the layout constants above; each scheme is short in TypeScript.
 */
import postgres from 'postgres';
import { openPostgres } from '../pg/connect.js';
import { PgtideError, fromServerError, redact } from '../core/errors.js';
import { discoverSequences, SequenceReader, type CatalogSequence, type SequenceDefinition } from './sequence-catalog.js';
import { qualify, quoteIdent, type QualifiedName } from '../core/sql.js';

export const NODE_BITS = 10;
export const LOCAL_BITS = 53;
export const MIN_NODE_ID = 1;
export const MAX_NODE_ID = 2 ** NODE_BITS - 1;
export const MAX_LOCAL_VALUE = (1n << BigInt(LOCAL_BITS)) - 1n;
/** SQLSTATE raised when a prefixed sequence's local value no longer fits its bits. */
export const PREFIX_OVERFLOW_SQLSTATE = '2200H';

/** The value prefixed_nextval() returns for a node id and a local value. */
export function prefixedValue(nodeId: number, local: bigint): bigint {
  if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > MAX_NODE_ID) throw new PgtideError('CONFIG_INVALID', `node id must be 0..${MAX_NODE_ID}, got ${nodeId}.`);
  if (local < 0n || local > MAX_LOCAL_VALUE) throw new PgtideError('SEQUENCE_OVERFLOW', `local value ${local} does not fit in ${LOCAL_BITS} bits.`);
  return (BigInt(nodeId) << BigInt(LOCAL_BITS)) | local;
}

export function splitPrefixedValue(value: bigint): { nodeId: number; local: bigint } {
  return { nodeId: Number(value >> BigInt(LOCAL_BITS)), local: value & MAX_LOCAL_VALUE };
}

/**
 * A node id from the cluster's system identifier, for when none is configured.
 * Physical copies (pg_basebackup, a promoted standby) share the system
 * identifier, and two clusters collide with probability 1/1023 — configure
 * node ids explicitly when that matters; checkCollisions() reports equal ids.
 */
export function deriveNodeId(systemIdentifier: bigint): number {
  return Number(systemIdentifier % BigInt(MAX_NODE_ID)) + MIN_NODE_ID;
}

const SHARED_SEQUENCE_SQL = `
CREATE SCHEMA IF NOT EXISTS pgtide;
CREATE TABLE IF NOT EXISTS pgtide.node (
  only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  node_id   int NOT NULL CHECK (node_id BETWEEN ${MIN_NODE_ID} AND ${MAX_NODE_ID}),
  set_at    timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION pgtide.set_node_id(p_node_id int, p_force boolean DEFAULT false) RETURNS int
LANGUAGE plpgsql AS $fn$
DECLARE
  v_current int;
BEGIN
  IF p_node_id IS NULL OR p_node_id < ${MIN_NODE_ID} OR p_node_id > ${MAX_NODE_ID} THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = format('pgtide node id must be between ${MIN_NODE_ID} and ${MAX_NODE_ID}, got %s', p_node_id),
      HINT = 'Give every primary its own number in that range.';
  END IF;
  SELECT node_id INTO v_current FROM pgtide.node FOR UPDATE;
  IF v_current IS NOT NULL AND v_current <> p_node_id AND NOT p_force THEN
    RAISE EXCEPTION USING ERRCODE = '55000',
      MESSAGE = format('this database already has pgtide node id %s; refusing to change it to %s', v_current, p_node_id),
      HINT = 'Values already handed out carry the old id. Change it only if no other node uses the new id: SELECT pgtide.set_node_id(n, true).';
  END IF;
  INSERT INTO pgtide.node (only_row, node_id) VALUES (true, p_node_id)
  ON CONFLICT (only_row) DO UPDATE SET node_id = EXCLUDED.node_id, set_at = now();
  RETURN p_node_id;
END
$fn$;
CREATE OR REPLACE FUNCTION pgtide.prefixed_nextval(seq regclass) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
  v_node int;
  v_local bigint;
BEGIN
  SELECT node_id INTO v_node FROM pgtide.node;
  IF v_node IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '55000',
      MESSAGE = 'pgtide.prefixed_nextval: this database has no pgtide node id',
      HINT = 'Run SELECT pgtide.set_node_id(n) with a number 1..${MAX_NODE_ID} no other primary uses, or pgtide sequences install --node-id n.';
  END IF;
  v_local := pg_catalog.nextval(seq);
  IF v_local < 0 OR v_local > ${MAX_LOCAL_VALUE} THEN
    RAISE EXCEPTION USING ERRCODE = '${PREFIX_OVERFLOW_SQLSTATE}',
      MESSAGE = format('pgtide.prefixed_nextval: sequence %s returned %s, outside the ${LOCAL_BITS}-bit local range 0..${MAX_LOCAL_VALUE} of node %s', seq, v_local, v_node),
      HINT = format('Node %s has used up its values. Give this database an unused node id (SELECT pgtide.set_node_id(n, true)) and ALTER SEQUENCE %s RESTART WITH 1.', v_node, seq);
  END IF;
  RETURN (v_node::bigint << ${LOCAL_BITS}) | v_local;
END
$fn$;
CREATE OR REPLACE FUNCTION pgtide.prefixed_value_node(v bigint) RETURNS int
LANGUAGE sql IMMUTABLE STRICT AS $fn$ SELECT (v >> ${LOCAL_BITS})::int $fn$;
CREATE OR REPLACE FUNCTION pgtide.prefixed_value_local(v bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT AS $fn$ SELECT v & ${MAX_LOCAL_VALUE}::bigint $fn$;
-- Column defaults run as the inserting user: it needs to see the function and the node id, nothing more.
GRANT USAGE ON SCHEMA pgtide TO PUBLIC;
GRANT SELECT ON pgtide.node TO PUBLIC;
REVOKE ALL ON FUNCTION pgtide.set_node_id(int, boolean) FROM PUBLIC;
`;

export interface InstallSharedSequenceOptions {
  /** 1..1023. When absent: keep the id already set, else derive one from the system identifier. */
  readonly nodeId?: number | undefined;
  /** Allow changing an id that is already set. */
  readonly force?: boolean | undefined;
}

export interface InstallSharedSequenceResult {
  readonly nodeId: number;
  readonly source: 'given' | 'existing' | 'system_identifier';
}

/** Creates pgtide.node, pgtide.set_node_id(), pgtide.prefixed_nextval() and sets the node id. Idempotent. */
export async function installSharedSequenceFunctions(sql: postgres.Sql, options: InstallSharedSequenceOptions = {}): Promise<InstallSharedSequenceResult> {
  if (options.nodeId !== undefined && (!Number.isInteger(options.nodeId) || options.nodeId < MIN_NODE_ID || options.nodeId > MAX_NODE_ID)) {
    throw new PgtideError('CONFIG_INVALID', `--node-id must be a whole number from ${MIN_NODE_ID} to ${MAX_NODE_ID}, got ${options.nodeId}.`);
  }
  try {
    return await sql.begin(async (tx) => {
      await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('pgtide.shared_sequences'))`);
      await tx.unsafe(SHARED_SEQUENCE_SQL);
      const existing = await tx.unsafe<{ node_id: number }[]>(`SELECT node_id FROM pgtide.node`);
      let result: InstallSharedSequenceResult;
      if (options.nodeId !== undefined) result = { nodeId: options.nodeId, source: 'given' };
      else if (existing[0]) result = { nodeId: existing[0].node_id, source: 'existing' };
      else {
        const [row] = await tx.unsafe<{ id: string }[]>(`SELECT system_identifier::text AS id FROM pg_control_system()`);
        result = { nodeId: deriveNodeId(BigInt(row!.id)), source: 'system_identifier' };
      }
      await tx.unsafe(`SELECT pgtide.set_node_id($1::int, $2::boolean)`, [result.nodeId, options.force === true]);
      return result;
    });
  } catch (error) {
    const state = (error as { code?: unknown }).code;
    if (state === '55000') throw new PgtideError('CONFIG_INVALID', `${(error as Error).message}. Pass --force to change it, but only if no other node uses the new id.`, { sqlState: state, cause: error });
    throw fromServerError(error, 'database');
  }
}

/** The node id set in a database, or null (also when pgtide's functions are not installed). */
export async function readNodeId(sql: postgres.Sql): Promise<number | null> {
  const [present] = await sql.unsafe<{ present: boolean }[]>(`SELECT to_regclass('pgtide.node') IS NOT NULL AS present`);
  if (!present?.present) return null;
  const rows = await sql.unsafe<{ node_id: number }[]>(`SELECT node_id FROM pgtide.node`);
  return rows[0]?.node_id ?? null;
}

/** Smallest v >= from with v ≡ residue (mod modulus); modulus > 0. */
function nextCongruent(from: bigint, residue: bigint, modulus: bigint): bigint {
  return from + mod(residue - from, modulus);
}
/** Largest v <= from with v ≡ residue (mod modulus). */
function previousCongruent(from: bigint, residue: bigint, modulus: bigint): bigint {
  return from - mod(from - residue, modulus);
}
function mod(a: bigint, m: bigint): bigint {
  const r = a % m;
  return r < 0n ? r + m : r;
}

export interface PartitionOptions {
  /** This node, 1..of. */
  readonly node: number;
  /** Number of nodes. */
  readonly of: number;
  /**
   * Per sequence (keyed by qualified name `"s"."n"`), a value the restarted
   * sequence must go beyond: above it for ascending sequences, below it for
   * descending ones — typically the other nodes' current values, so values
   * they handed out before partitioning cannot come back.
   */
  readonly beyond?: ReadonlyMap<string, bigint> | undefined;
}

export interface PartitionResult extends QualifiedName {
  readonly qualifiedName: string;
  readonly incrementBefore: bigint;
  readonly incrementAfter: bigint;
  /** What nextval() would have returned before, and returns now. */
  readonly nextBefore: bigint;
  readonly nextAfter: bigint;
  readonly changed: boolean;
}

interface PartitionRow {
  readonly last_value: string;
  readonly is_called: boolean;
  readonly increment: string;
  readonly min: string;
  readonly max: string;
  readonly cycle: boolean;
}

/**
 * Gives node K of N its own residue class for every listed sequence, in one
 * transaction: all sequences are partitioned or none. Idempotent — a sequence
 * already partitioned for K of N (and beyond `beyond`) is left alone.
 */
export async function partitionSequences(sql: postgres.Sql, sequences: readonly QualifiedName[], options: PartitionOptions): Promise<PartitionResult[]> {
  const { node, of } = options;
  if (!Number.isInteger(of) || of < 1 || !Number.isInteger(node) || node < 1 || node > of) {
    throw new PgtideError('CONFIG_INVALID', `--node must be a whole number from 1 to --of (${of}), and --of at least 1; got --node ${node} --of ${of}.`);
  }
  const n = BigInt(of);
  const residue = mod(BigInt(node), n);
  try {
    return await sql.begin(async (tx) => {
      const plans: { seq: QualifiedName; qualifiedName: string; row: PartitionRow; incrementAfter: bigint; nextBefore: bigint; nextAfter: bigint; changed: boolean }[] = [];
      const problems: string[] = [];
      for (const seq of sequences) {
        const qualifiedName = qualify(seq.schema, seq.name);
        const [row] = await tx.unsafe<PartitionRow[]>(`
          SELECT s.last_value::text AS last_value, s.is_called, ps.seqincrement::text AS increment,
                 ps.seqmin::text AS min, ps.seqmax::text AS max, ps.seqcycle AS cycle
          FROM ${qualifiedName} s JOIN pg_sequence ps ON ps.seqrelid = s.tableoid`);
        const increment = BigInt(row!.increment);
        const last = BigInt(row!.last_value);
        const min = BigInt(row!.min);
        const max = BigInt(row!.max);
        const nextBefore = row!.is_called ? last + increment : last;
        if (row!.cycle) {
          problems.push(`${qualifiedName} is a CYCLE sequence: after wrapping it would leave its residue class. ALTER SEQUENCE ${qualifiedName} NO CYCLE first.`);
          continue;
        }
        const ascending = increment > 0n;
        const incrementAfter = ascending ? n : -n;
        const limit = options.beyond?.get(qualifiedName);
        let from = nextBefore;
        if (limit !== undefined) from = ascending ? (from > limit ? from : limit + 1n) : (from < limit ? from : limit - 1n);
        const aligned = increment === incrementAfter && mod(nextBefore, n) === residue && from === nextBefore;
        const nextAfter = aligned ? nextBefore : ascending ? nextCongruent(from, residue, n) : previousCongruent(from, residue, n);
        if (nextAfter > max || nextAfter < min) {
          problems.push(`${qualifiedName}: the next value for node ${node} of ${of} would be ${nextAfter}, outside MINVALUE ${min} .. MAXVALUE ${max}; widen the range (ALTER SEQUENCE … AS bigint MAXVALUE …).`);
          continue;
        }
        plans.push({ seq, qualifiedName, row: row!, incrementAfter, nextBefore, nextAfter, changed: !aligned });
      }
      if (problems.length > 0) {
        throw new PgtideError('SEQUENCE_OVERFLOW', `cannot partition ${problems.length} sequence(s); nothing was changed:\n  - ${problems.join('\n  - ')}`);
      }
      for (const plan of plans) {
        if (plan.changed) await tx.unsafe(`ALTER SEQUENCE ${plan.qualifiedName} INCREMENT BY ${plan.incrementAfter} RESTART WITH ${plan.nextAfter}`);
      }
      return plans.map((plan) => ({
        schema: plan.seq.schema,
        name: plan.seq.name,
        qualifiedName: plan.qualifiedName,
        incrementBefore: BigInt(plan.row.increment),
        incrementAfter: plan.changed ? plan.incrementAfter : BigInt(plan.row.increment),
        nextBefore: plan.nextBefore,
        nextAfter: plan.nextAfter,
        changed: plan.changed,
      }));
    });
  } catch (error) {
    throw fromServerError(error, 'database');
  }
}

// ---------------------------------------------------------------------------
// Collision check

export interface CollisionNode {
  readonly label: string;
  readonly url: string;
}

export type CollisionKind =
  /** Both nodes will hand out a common value. */
  | 'future_overlap'
  /** One node will hand out a value inside the range the other already handed out. */
  | 'past_overlap'
  /** Both databases carry the same pgtide node id. */
  | 'same_node_id'
  /** A column uses prefixed_nextval() but the database has no node id. */
  | 'node_id_unset';

export interface CollisionFinding {
  readonly kind: CollisionKind;
  readonly nodes: readonly [string, string] | readonly [string];
  /** The sequence on each node (qualified names); empty for node-level findings. */
  readonly sequences: readonly string[];
  /** A value both can produce, when there is one. */
  readonly example?: bigint | undefined;
  readonly detail: string;
}

export interface NodeSequenceSummary {
  readonly label: string;
  readonly nodeId: number | null;
  readonly sequences: number;
}

export interface CollisionReport {
  readonly nodes: readonly NodeSequenceSummary[];
  readonly findings: readonly CollisionFinding[];
}

/** The values a sequence will hand out: x in [lo, hi] with x ≡ residue (mod modulus). */
interface Stream {
  readonly lo: bigint;
  readonly hi: bigint;
  readonly residue: bigint;
  readonly modulus: bigint;
}
interface Range { readonly lo: bigint; readonly hi: bigint }

interface NodeSequence {
  readonly seq: CatalogSequence;
  readonly prefixed: boolean;
  readonly future: Stream | null;
  /** Values already handed out (approximately: every value between START and the last one). */
  readonly past: Range | null;
  /** `"s"."t"."c"` of the columns it feeds. */
  readonly columns: readonly string[];
}

interface NodeState {
  readonly label: string;
  readonly nodeId: number | null;
  readonly sequences: readonly NodeSequence[];
}

function gcdExt(a: bigint, b: bigint): [bigint, bigint, bigint] {
  if (b === 0n) return [a, 1n, 0n];
  const [g, x, y] = gcdExt(b, a % b);
  return [g, y, x - (a / b) * y];
}

/** Smallest common value of two streams, or undefined (Chinese remainder theorem on the residues, then the range). */
export function firstCommonValue(a: Stream, b: Stream): bigint | undefined {
  const lo = a.lo > b.lo ? a.lo : b.lo;
  const hi = a.hi < b.hi ? a.hi : b.hi;
  if (lo > hi) return undefined;
  const [g, p] = gcdExt(a.modulus, b.modulus);
  const diff = b.residue - a.residue;
  if (diff % g !== 0n) return undefined;
  const lcm = (a.modulus / g) * b.modulus;
  const step = b.modulus / g;
  const k = mod((diff / g) * p, step);
  const x = nextCongruent(lo, mod(a.residue + a.modulus * k, lcm), lcm);
  return x <= hi ? x : undefined;
}

function streamOf(definition: SequenceDefinition, lastValue: bigint | null, isCalled: boolean | null, offset: bigint, prefixed: boolean): { future: Stream | null; past: Range | null } {
  const inc = definition.increment;
  const lo = prefixed && definition.min < 0n ? 0n : definition.min;
  const hi = prefixed && definition.max > MAX_LOCAL_VALUE ? MAX_LOCAL_VALUE : definition.max;
  // Unknown position (never called, read without SELECT): assume it is at its start.
  const last = lastValue ?? definition.start;
  const called = lastValue === null ? false : isCalled ?? true;
  const next = called ? last + inc : last;
  const modulus = inc < 0n ? -inc : inc;
  let future: Stream | null;
  if (definition.cycle) future = { lo, hi, residue: 0n, modulus: 1n };
  else if (inc > 0n) future = next <= hi ? { lo: next, hi, residue: mod(next, modulus), modulus } : null;
  else future = next >= lo ? { lo, hi: next, residue: mod(next, modulus), modulus } : null;
  const lastHanded = called ? last : last - inc;
  let past: Range | null;
  if (definition.cycle && called) past = { lo, hi };
  else if (inc > 0n) past = lastHanded >= definition.start ? { lo: definition.start, hi: lastHanded } : null;
  else past = lastHanded <= definition.start ? { lo: lastHanded, hi: definition.start } : null;
  // Prefixed values are the local ones moved into the node's block.
  return {
    future: future && { lo: future.lo + offset, hi: future.hi + offset, residue: mod(future.residue + offset, future.modulus), modulus: future.modulus },
    past: past && { lo: past.lo + offset, hi: past.hi + offset },
  };
}

async function readNode(node: CollisionNode): Promise<NodeState> {
  const sql = openPostgres(node.url, 'catalog', { max: 1, onnotice: () => {}, connection: { application_name: 'pgtide sequences check' } });
  try {
    const discovery = await discoverSequences(sql, { tables: 'all', everySequence: true }, node.label);
    const read = await new SequenceReader(sql, discovery.sequences, node.label).read();
    const nodeId = await readNodeId(sql);
    const sequences = discovery.sequences.map((seq, i): NodeSequence => {
      const reading = read.readings[i];
      const prefixed = seq.usedBy.some((u) => u.how === 'prefixed_default');
      const offset = prefixed && nodeId !== null ? BigInt(nodeId) << BigInt(LOCAL_BITS) : 0n;
      const { future, past } = streamOf(reading?.definition ?? seq.definition, reading?.lastValue ?? null, reading?.isCalled ?? null, offset, prefixed);
      return { seq, prefixed, future, past, columns: [...new Set(seq.usedBy.map((u) => `${qualify(u.table.schema, u.table.name)}.${quoteIdent(u.column)}`))] };
    });
    return { label: node.label, nodeId, sequences };
  } catch (error) {
    throw fromServerError(error, `${node.label} (${redact(node.url)})`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function comparePair(a: NodeState, b: NodeState, sa: NodeSequence, sb: NodeSequence): CollisionFinding[] {
  const nodes = [a.label, b.label] as const;
  const sequences = [sa.seq.qualifiedName, sb.seq.qualifiedName];
  const what = sa.seq.qualifiedName === sb.seq.qualifiedName ? sa.seq.qualifiedName : `${sa.seq.qualifiedName} / ${sb.seq.qualifiedName}`;
  if (sa.future && sb.future) {
    const example = firstCommonValue(sa.future, sb.future);
    if (example !== undefined) {
      return [{
        kind: 'future_overlap', nodes, sequences, example,
        detail: `${what}: ${a.label} and ${b.label} will both hand out ${example}${sa.prefixed || sb.prefixed ? '' : ' — partition the sequences (pgtide sequences partition --node K --of N) or use pgtide.prefixed_nextval()'}`,
      }];
    }
  }
  const findings: CollisionFinding[] = [];
  for (const [x, y, sx, sy] of [[a, b, sa, sb], [b, a, sb, sa]] as const) {
    if (!sx.future || !sy.past) continue;
    const example = firstCommonValue(sx.future, { lo: sy.past.lo, hi: sy.past.hi, residue: 0n, modulus: 1n });
    if (example !== undefined) {
      findings.push({
        kind: 'past_overlap', nodes, sequences, example,
        detail: `${what}: ${x.label} will hand out ${example}, inside the range ${sy.past.lo}..${sy.past.hi} ${y.label} has already used — restart ${x.label}'s sequence beyond it`,
      });
    }
  }
  return findings;
}

/**
 * Reads every sequence of every node and reports each pair of nodes whose
 * sequences can produce the same value. Sequences are paired by name and by
 * the column they feed (a table may use differently named sequences on
 * different nodes).
 */
export async function checkCollisions(nodes: readonly CollisionNode[]): Promise<CollisionReport> {
  const states: NodeState[] = [];
  for (const node of nodes) states.push(await readNode(node));
  const findings: CollisionFinding[] = [];
  for (const state of states) {
    const prefixedSeqs = state.sequences.filter((s) => s.prefixed);
    if (prefixedSeqs.length > 0 && state.nodeId === null) {
      findings.push({
        kind: 'node_id_unset', nodes: [state.label], sequences: prefixedSeqs.map((s) => s.seq.qualifiedName),
        detail: `${state.label} uses pgtide.prefixed_nextval() but has no node id: every insert fails. Run pgtide sequences install --node-id N there.`,
      });
    }
  }
  for (let i = 0; i < states.length; i++) {
    for (let j = i + 1; j < states.length; j++) {
      const a = states[i]!;
      const b = states[j]!;
      if (a.nodeId !== null && a.nodeId === b.nodeId) {
        findings.push({ kind: 'same_node_id', nodes: [a.label, b.label], sequences: [], detail: `${a.label} and ${b.label} both have pgtide node id ${a.nodeId}: their prefixed values collide. Give one of them another id (SELECT pgtide.set_node_id(n, true)).` });
      }
      const byName = new Map(b.sequences.map((s) => [s.seq.qualifiedName, s]));
      const byColumn = new Map<string, NodeSequence[]>();
      for (const s of b.sequences) for (const c of s.columns) byColumn.set(c, [...(byColumn.get(c) ?? []), s]);
      for (const sa of a.sequences) {
        const partners = new Set<NodeSequence>();
        const same = byName.get(sa.seq.qualifiedName);
        if (same) partners.add(same);
        for (const c of sa.columns) for (const s of byColumn.get(c) ?? []) partners.add(s);
        for (const sb of partners) findings.push(...comparePair(a, b, sa, sb));
      }
    }
  }
  return { nodes: states.map((s) => ({ label: s.label, nodeId: s.nodeId, sequences: s.sequences.length })), findings };
}
