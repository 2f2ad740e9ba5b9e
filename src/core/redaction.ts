/**
 * Password redaction for anything that may hold a connection string: error
 * messages, YAML parser excerpts, log lines, stack traces.
 *
 * Three rules, each a second line of defence for the others:
 * - URLs: the password is everything between `user:` and the LAST `@` of the
 *   authority (a raw `@` in a password is common and the URL parser itself
 *   splits at the last one). When what follows does not look like a host list
 *   — an excerpt cut off inside the password, a stray `:` — the whole rest of
 *   the authority is hidden: a false positive costs a host name, a false
 *   negative a password.
 * - key=value strings: `password=` with a single-quoted value (backslash
 *   escapes, as libpq reads them) or an unquoted one up to unescaped space.
 * - The literal passwords of the connections pgtide was configured with
 *   (rememberSecret), raw and percent-encoded, wherever they appear: a server
 *   or driver message may quote them out of any syntax.
 */

const SECRETS = new Set<string>();

/**
 * Shorter secrets are not replaced literally: hiding every "ab" would garble
 * messages, and such passwords are still caught by the structural rules.
 */
const MIN_LITERAL_LENGTH = 4;

/** Registers a password to be hidden wherever it appears from now on. */
export function rememberSecret(secret: string | undefined): void {
  if (secret === undefined || secret.length < MIN_LITERAL_LENGTH) return;
  SECRETS.add(secret);
  const encoded = encodeURIComponent(secret);
  if (encoded !== secret) SECRETS.add(encoded);
}

/** One element of a URL host list: name, IPv4, [IPv6], optional :port. */
const HOST_ELEMENT = /^(?:\[[0-9A-Fa-f:.%]+\]|[A-Za-z0-9._%~-]*)(?::\d*)?$/;

function redactAuthority(authority: string): string {
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : '';
  const hosts = at >= 0 ? authority.slice(at + 1) : authority;
  const hostsLookRight = hosts.split(',').every((element) => HOST_ELEMENT.test(element));
  if (!hostsLookRight) {
    // Cut off or malformed: keep the user name at most.
    const colon = authority.indexOf(':');
    const user = colon >= 0 && (at < 0 || colon < at) ? authority.slice(0, colon) : '';
    return `${user}:***`;
  }
  if (at < 0) return authority;
  const colon = userinfo.indexOf(':');
  return colon >= 0 ? `${userinfo.slice(0, colon)}:***@${hosts}` : authority;
}

/** Removes passwords from anything that may hold a connection string. */
export function redact(text: string): string {
  let out = text
    .replace(/(postgres(?:ql)?:\/\/)([^\s/?#]*)/gi, (_m, scheme: string, authority: string) => scheme + redactAuthority(authority))
    .replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s'\\]|\\.)(?:[^\s\\]|\\.)*)/gi, '$1***');
  if (SECRETS.size > 0) {
    for (const secret of [...SECRETS].sort((a, b) => b.length - a.length)) out = out.split(secret).join('***');
  }
  return out;
}
