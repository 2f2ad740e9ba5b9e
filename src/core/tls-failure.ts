/**
 * What a TLS failure reported by Node means for the user. Pure, so that the
 * error mapping (core/errors.ts) can use it without importing connections.
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

export interface TlsFailure {
  /** The cause and the fix, as a sentence. */
  readonly advice: string;
  readonly retryable: boolean;
}

/** What a TLS failure means, or undefined when the error is not one. */
export function tlsFailure(code: string, message: string, what: string): TlsFailure | undefined {
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return { retryable: false, advice: `the ${what} server's TLS certificate does not name the host pgtide connected to (sslmode=verify-full checks the host of the connection string against the certificate's names and IP addresses). Connect by a name or address the certificate lists, or issue the certificate for this host` };
  }
  if (CHAIN_FAILURES.has(code)) {
    return { retryable: false, advice: `the ${what} server's TLS certificate is not signed by a CA that sslrootcert trusts. Set sslrootcert in the ${what} connection string to the file of the CA that issued the server certificate` };
  }
  if (VALIDITY_FAILURES.has(code)) {
    return { retryable: false, advice: `the ${what} server's TLS certificate is not valid now (${code}). Renew the server certificate` };
  }
  // A server without TLS answers the SSLRequest with "N"; postgres.js, unlike libpq, then starts the
  // handshake anyway and the server drops the connection. It stays retryable: a reset at that
  // moment can also be the network's.
  if (code === 'ECONNRESET' && /before secure TLS connection was established/.test(message)) {
    return { retryable: true, advice: `the ${what} server closed the connection during the TLS handshake. Most often the server does not offer TLS (ssl = off) while the ${what} connection string's sslmode requires it (require, verify-ca, verify-full): turn ssl on on the server, or use sslmode=prefer or disable` };
  }
  return undefined;
}
