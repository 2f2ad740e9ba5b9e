/**
 * The `target:` of a config: a PostgreSQL database (`url`, the default kind,
 * so configs written before there was a second kind stay valid) or an NDJSON
 * file (`kind: ndjson`, `path`, `-` for standard output).
 *
 * What an NDJSON target cannot do is refused by name rather than ignored:
 * it has no tables to copy into and no sequences to set, so `copy.enabled`
 * and `sequences.enabled` default to false for it and an explicit `true` is
 * a config error; commands that work on a PostgreSQL target alone
 * (`resync`, `sequences ...`) say so (`postgresTargetUrl`).
 */
import { z } from 'zod';
import { PgtideError } from '../core/errors.js';

export function targetSchema<T extends z.ZodType<string>>(connectionUrl: T) {
  const postgres = z.object({ kind: z.literal('postgres'), url: connectionUrl }).strict();
  const ndjson = z.object({
    kind: z.literal('ndjson'),
    /** The file each committed transaction is appended to as one line; `-` is standard output. */
    path: z.string().min(1),
    /** Where the position is recorded; default `<path>.state.json`, required with `path: -`. */
    statePath: z.string().min(1).optional(),
  }).strict();
  return z.preprocess(
    (value) => (value && typeof value === 'object' && !Array.isArray(value) && !('kind' in value) ? { kind: 'postgres', ...value } : value),
    z.discriminatedUnion('kind', [postgres, ndjson], {
      error: (issue) => (issue.input === undefined ? 'is required' : 'target.kind must be postgres (with url) or ndjson (with path)'),
    }),
  );
}

/**
 * Before validation: an NDJSON target turns off what it cannot do unless the
 * config asked for it, so that asking is an error (see `ndjsonRefusals`).
 */
export function withTargetDefaults(input: unknown): unknown {
  if (!input || typeof input !== 'object' || Array.isArray(input)) return input;
  const config = input as Record<string, unknown>;
  const target = config.target as Record<string, unknown> | undefined;
  if (target?.kind !== 'ndjson') return input;
  const off = (section: unknown): unknown => (section && typeof section === 'object' && !Array.isArray(section)
    ? ('enabled' in section ? section : { ...section, enabled: false })
    : section === undefined ? { enabled: false } : section);
  return { ...config, copy: off(config.copy), sequences: off(config.sequences) };
}

interface TargetFacts {
  readonly target: { readonly kind: 'postgres' } | { readonly kind: 'ndjson'; readonly path: string; readonly statePath?: string | undefined };
  readonly copy: { readonly enabled: boolean };
  readonly sequences: { readonly enabled: boolean };
}

/** Issues for what the config asks of an NDJSON target that it cannot do. */
export function ndjsonRefusals(config: TargetFacts): { readonly path: string[]; readonly message: string }[] {
  if (config.target.kind !== 'ndjson') return [];
  const issues: { path: string[]; message: string }[] = [];
  if (config.copy.enabled) {
    issues.push({ path: ['copy', 'enabled'], message: 'the ndjson target has no initial copy: it writes the changes committed after its slot was created. Set copy.enabled: false (or leave it out)' });
  }
  if (config.sequences.enabled) {
    issues.push({ path: ['sequences', 'enabled'], message: 'the ndjson target has no sequences to keep in step. Set sequences.enabled: false (or leave it out)' });
  }
  if (config.target.path === '-' && config.target.statePath === undefined) {
    issues.push({ path: ['target', 'statePath'], message: 'is required when target.path is - (standard output): name the file where pgtide records its position' });
  }
  return issues;
}

/** The state file of an NDJSON target. */
export function ndjsonStatePath(target: { readonly path: string; readonly statePath?: string | undefined }): string {
  return target.statePath ?? `${target.path}.state.json`;
}

/** The target's connection string, for work only a PostgreSQL target can do; a clear refusal otherwise. */
export function postgresTargetUrl(config: { readonly target: { readonly kind: 'postgres'; readonly url: string } | { readonly kind: 'ndjson' } }, what: string): string {
  if (config.target.kind === 'postgres') return config.target.url;
  throw new PgtideError('UNSUPPORTED_FOR_TARGET', `${what} needs a PostgreSQL target (target.url), and this config's target is an NDJSON file (kind: ndjson): it has no tables, sequences or pgtide schema to work on.`);
}
