#!/usr/bin/env node
// Checks that every import under src/ runs down the floors (ARCHITECTURE.md,
// "Floors and import rules"). Prints each broken rule with the imports that
// break it and exits 1; exits 0 when every rule holds.
// Usage: node scripts/check-layers.mjs [--root DIR]   (DIR holds src/; default: this repository)
// Type-only imports count: they tie a floor to another's vocabulary as much as value imports do.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Folders whose code is on the data path; none may reach the lifecycle (control) or the commands (cli). */
const FLOW = ['pg', 'protocol', 'source', 'changes', 'apply', 'sinks', 'state', 'copy', 'sequences', 'pipeline', 'schema'];

/** What each floor may import besides itself. */
const ALLOWED = {
  core: [],
  pg: ['core'],
  protocol: ['core'],
  changes: ['core', 'protocol'],
  source: ['core', 'pg', 'protocol', 'changes'],
  state: ['core', 'pg'],
  apply: ['core', 'protocol', 'changes'],
  sinks: ['core', 'pg', 'protocol', 'changes', 'apply', 'state'],
  copy: ['core', 'pg', 'protocol'],
  sequences: ['core', 'pg', 'state'],
  schema: ['core'],
  pipeline: ['core', 'pg', 'protocol', 'changes', 'source', 'apply', 'sinks', 'state'],
  harness: ['core'],
  control: ['core', 'pg', 'protocol', 'changes', 'source', 'apply', 'sinks', 'state', 'copy', 'sequences', 'pipeline', 'harness', 'schema'],
  cli: ['core', 'pg', 'protocol', 'changes', 'source', 'apply', 'sinks', 'state', 'copy', 'sequences', 'pipeline', 'harness', 'control', 'schema'],
};

const RULES = [
  { text: 'core imports nothing of pgtide', broken: (from, to) => from === 'core' && to !== 'core' },
  { text: 'protocol imports core only', broken: (from, to) => from === 'protocol' && !['protocol', 'core'].includes(to) },
  { text: 'changes imports protocol and core only', broken: (from, to) => from === 'changes' && !['changes', 'protocol', 'core'].includes(to) },
  { text: `no flow folder (${FLOW.join(', ')}) imports control or cli`, broken: (from, to) => FLOW.includes(from) && ['control', 'cli'].includes(to) },
  { text: 'only cli imports control/engine', broken: (from, _to, target) => from !== 'cli' && target === 'src/control/engine.ts' },
  ...Object.entries(ALLOWED)
    .filter(([floor]) => !['core', 'protocol', 'changes'].includes(floor))
    .map(([floor, allowed]) => ({
      text: `${floor} imports only ${allowed.length ? allowed.join(', ') : 'itself'}`,
      broken: (from, to) => from === floor && to !== floor && !allowed.includes(to),
    })),
];

function parseArgs(argv) {
  const at = argv.indexOf('--root');
  return at >= 0 ? path.resolve(argv[at + 1] ?? '.') : fileURLToPath(new URL('..', import.meta.url));
}

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return walk(full);
    return /\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts') ? [full] : [];
  });
}

/** Static imports and re-exports (also spread over several lines), side-effect imports, and import() with a literal. */
const IMPORT = /\b(?:import|export)\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|\bimport\s+['"]([^'"]+)['"]/g;

function importsOf(text) {
  const found = [];
  for (const match of text.matchAll(IMPORT)) {
    const spec = match[1] ?? match[2] ?? match[3];
    if (!spec.startsWith('.')) continue;
    found.push({ spec, line: text.slice(0, match.index).split('\n').length });
  }
  return found;
}

const floorOf = (repoPath) => {
  const parts = repoPath.split('/');
  return parts.length > 2 && parts[0] === 'src' ? parts[1] : undefined;
};

const root = parseArgs(process.argv.slice(2));
const files = walk(path.join(root, 'src'));
const broken = new Map(RULES.map((rule) => [rule.text, []]));
const homeless = [];
let imports = 0;
for (const file of files) {
  const from = path.relative(root, file).split(path.sep).join('/');
  const fromFloor = floorOf(from);
  if (!fromFloor || !(fromFloor in ALLOWED)) { homeless.push(from); continue; }
  for (const { spec, line } of importsOf(readFileSync(file, 'utf8'))) {
    imports++;
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec)).replace(/\.js$/, '.ts');
    const toFloor = floorOf(target) ?? target;
    for (const rule of RULES) {
      if (rule.broken(fromFloor, toFloor, target)) broken.get(rule.text).push(`${from}:${line} imports ${target}`);
    }
  }
}

let failed = false;
if (homeless.length > 0) {
  failed = true;
  console.log(`rule: every file under src/ sits in a floor (${Object.keys(ALLOWED).join(', ')})`);
  for (const file of homeless) console.log(`  ${file}`);
}
for (const [text, offenders] of broken) {
  if (offenders.length === 0) continue;
  failed = true;
  console.log(`rule: ${text}`);
  for (const offender of offenders) console.log(`  ${offender}`);
}
if (failed) {
  console.log('layer check failed: move the code to the floor it belongs to, or pass what it needs down from the caller (ARCHITECTURE.md, "Floors and import rules").');
  process.exit(1);
}
console.log(`layer check: ${files.length} files, ${imports} imports between pgtide files, ${RULES.length + 1} rules kept`);
