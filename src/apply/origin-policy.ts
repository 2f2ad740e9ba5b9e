/**
 * Which source transactions an edge forwards, judged by their replication
 * origin: the origin a transaction was applied under on the source (a pgtide
 * edge's `pgtide_<name>_<oid>`, a built-in subscription's `pg_<oid>`), or none
 * for a transaction written there by an application.
 *
 * - `any`: everything (PostgreSQL's default for CREATE SUBSCRIPTION).
 * - `none`: only what was written on the source itself; the setting that makes
 *   a two-way pair or a mesh loop-free.
 * - `allow` / `deny`: local writes always pass; an origin passes when it
 *   matches (allow) or does not match (deny) one of the patterns. For chains
 *   and hubs that forward some edges' changes on and not others'.
 *
 * Patterns are origin names in which `*` matches any run of characters, since
 * pgtide's origin names end in the target database's OID, which the person
 * writing the config may not know (`pgtide_east_*`).
 */
export type OriginPolicy =
  | { readonly kind: 'any' }
  | { readonly kind: 'none' }
  | { readonly kind: 'allow'; readonly patterns: readonly string[] }
  | { readonly kind: 'deny'; readonly patterns: readonly string[] };

/** The config's spelling: `none`, `any`, `{ allow: [...] }` or `{ deny: [...] }`. */
export type OriginSetting = 'none' | 'any' | { readonly allow: readonly string[] } | { readonly deny: readonly string[] };

export function originPolicy(setting: OriginSetting): OriginPolicy {
  if (setting === 'none' || setting === 'any') return { kind: setting };
  if ('allow' in setting) return { kind: 'allow', patterns: setting.allow };
  return { kind: 'deny', patterns: setting.deny };
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${body}$`);
}

/** Compiled once per pipeline: `accepts` runs for every source transaction. */
export class OriginMatcher {
  readonly policy: OriginPolicy;
  readonly #patterns: readonly RegExp[];

  constructor(policy: OriginPolicy) {
    this.policy = policy;
    this.#patterns = policy.kind === 'allow' || policy.kind === 'deny' ? policy.patterns.map(globToRegExp) : [];
  }

  /** `origin` undefined: the transaction was written on the source itself, which every policy forwards. */
  accepts(origin: string | undefined): boolean {
    if (origin === undefined) return true;
    switch (this.policy.kind) {
      case 'any': return true;
      case 'none': return false;
      case 'allow': return this.#patterns.some((p) => p.test(origin));
      case 'deny': return !this.#patterns.some((p) => p.test(origin));
    }
  }

  /**
   * Whether the publisher itself can drop every origin (`origin 'none'`,
   * PostgreSQL 16+, protocol 4). Only for `none`: the server's filter is
   * "has any origin", so allow and deny lists are judged here, on the client.
   */
  serverFilters(protocolVersion: number): boolean {
    return this.policy.kind === 'none' && protocolVersion >= 4;
  }

  /** Forwards every origin: the filter stage can be left out. */
  get passesAll(): boolean {
    return this.policy.kind === 'any';
  }
}
