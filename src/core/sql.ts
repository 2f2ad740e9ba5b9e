/**
 * SQL text shared by every floor: identifier quoting, qualified names and
 * text-array literals. Pure; imports nothing.
 */

/** Always quotes, so a name is never folded or read as a keyword. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualify(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

export interface QualifiedName { readonly schema: string; readonly name: string }

/**
 * Parses `schema.table`, `table` (schema public), and double-quoted parts,
 * where `""` inside quotes is a literal quote. Unquoted parts fold to lower case,
 * as PostgreSQL does.
 */
export function parseQualifiedName(text: string): QualifiedName | undefined {
  const parts: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= text.length) return undefined;
        if (text[i] === '"') {
          if (text[i + 1] === '"') { value += '"'; i += 2; continue; }
          i++;
          break;
        }
        value += text[i++];
      }
      if (value === '') return undefined;
      parts.push(value);
    } else {
      let value = '';
      while (i < text.length && text[i] !== '.') value += text[i++];
      value = value.trim();
      if (!/^[\p{L}_][\p{L}\p{N}_$]*$/u.test(value)) return undefined;
      parts.push(value.toLowerCase());
    }
    if (i < text.length) {
      if (text[i] !== '.') return undefined;
      i++;
      if (i >= text.length) return undefined;
    }
  }
  if (parts.length === 1) return { schema: 'public', name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  return undefined;
}

/** Builds a PostgreSQL array literal of text elements; NULL stays NULL. */
export function textArrayLiteral(values: readonly (string | null)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const value = values[i];
    if (value === null || value === undefined) {
      out += 'NULL';
    } else {
      out += '"';
      // Only backslash and double quote need escaping inside a quoted element.
      out += /["\\]/.test(value) ? value.replace(/["\\]/g, '\\$&') : value;
      out += '"';
    }
  }
  return out + '}';
}

/** Names for a message: the first ten, then how many more. */
export function listNames(names: readonly string[]): string {
  const shown = names.slice(0, 10).join(', ');
  return names.length > 10 ? `${shown} and ${names.length - 10} more` : shown;
}
