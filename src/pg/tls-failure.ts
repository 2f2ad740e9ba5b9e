/**
 * What a TLS failure reported by Node means for the user. Pure, so that the
 * error mapping (control/errors.ts) can use it without importing connections.
 *
 * Codes: OpenSSL's X509 verification results as Node names them, and Node's
 * ERR_TLS_CERT_ALTNAME_INVALID for a host that is not in the certificate.
 */
const CHAIN_FAILURES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE', 'INVALID_CA', 'CERT_CHAIN_TOO_LONG',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_REJECTED', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE',
]);
const VALIDITY_FAILURES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_REVOKED']);

/** A sentence on the cause and the fix, or undefined when `code` is not a TLS verification failure. */
export function tlsFailureAdvice(code: string, what: string): string | undefined {
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the ${what} server's TLS certificate does not name the host pgtide connected to (sslmode=verify-full checks the host of the connection string against the certificate's names and IP addresses). Connect by a name or address the certificate lists, or issue the certificate for this host`;
  }
  if (CHAIN_FAILURES.has(code)) {
    return `the ${what} server's TLS certificate is not signed by a CA that sslrootcert trusts. Set sslrootcert in the ${what} connection string to the file of the CA that issued the server certificate`;
  }
  if (VALIDITY_FAILURES.has(code)) {
    return `the ${what} server's TLS certificate is not valid now (${code}). Renew the server certificate`;
  }
  return undefined;
}
