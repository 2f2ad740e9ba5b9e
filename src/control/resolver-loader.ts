/**
 * Loads the custom conflict resolver modules the config names (docs/conflicts.md,
 * "Custom resolver") once, at start, so a wrong path or a module that exports
 * no function is a config error before anything is copied or applied, not a
 * stop in the middle of a batch.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../core/errors.js';
import type { NamedResolver } from '../apply/conflict-policy.js';
import type { ConflictResolver } from '../apply/conflict-resolver.js';
import { resolverPaths, type ConflictsConfig, type LoadedResolvers } from './conflict-config.js';

export async function loadResolvers(config: ConflictsConfig): Promise<LoadedResolvers> {
  const byPath = new Map<string, NamedResolver>();
  for (const modulePath of resolverPaths(config)) byPath.set(modulePath, await loadResolver(modulePath));
  return { byPath };
}

/** A path relative to the config file was made absolute when the file was read (config.ts); others are taken from the working directory. */
export async function loadResolver(modulePath: string): Promise<NamedResolver> {
  const file = path.resolve(modulePath);
  const fix = 'conflicts.resolver (or conflicts.tables.<table>.resolver) must name a JavaScript module (.js, .mjs, .cjs; compile a TypeScript resolver first) whose default export is a function (docs/conflicts.md, "Custom resolver")';
  if (!existsSync(file)) throw new ConfigError(`the conflict resolver module ${file} does not exist. ${fix}.`);
  let loaded: Record<string, unknown>;
  try {
    loaded = await import(pathToFileURL(file).href) as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(`the conflict resolver module ${file} could not be loaded: ${error instanceof Error ? error.message : String(error)}. ${fix}.`, { cause: error });
  }
  if (!('default' in loaded) || loaded.default === undefined) {
    throw new ConfigError(`the conflict resolver module ${file} has no default export${Object.keys(loaded).length ? ` (it exports ${Object.keys(loaded).join(', ')})` : ''}. ${fix}.`);
  }
  if (typeof loaded.default !== 'function') {
    throw new ConfigError(`the default export of the conflict resolver module ${file} is ${typeof loaded.default}, not a function. ${fix}.`);
  }
  return { module: file, resolve: loaded.default as ConflictResolver };
}
