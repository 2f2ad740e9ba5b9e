import { classify, isRetried, NETWORK_CODES, serverErrorFields } from './error-class.js';

/**
 * Every error pgtide raises on purpose is a PgtideError: it carries a stable
 * `code` (for scripts and docs), the server's SQLSTATE when one caused it, and
 * whether retrying the same work can succeed. The message always tells the user
 * what to do next. Connection strings are never put into messages (see redact()).
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_NOT_FOUND'
  | 'CONNECTION_FAILED'
  | 'AUTH_FAILED'
  | 'PERMISSION_DENIED'
  | 'WAL_LEVEL_NOT_LOGICAL'
  | 'PUBLICATION_MISSING'
  | 'SLOT_MISSING'
  | 'SLOT_IN_USE'
  | 'SLOT_NOT_OURS'
  | 'SLOT_AHEAD_OF_TARGET'
  | 'SLOT_INVALIDATED'
  | 'SOURCE_CHANGED'
  | 'SOURCE_IS_TARGET'
  | 'NO_REPLICA_IDENTITY'
  | 'TABLE_MISSING_ON_TARGET'
  | 'TABLE_MISSING_ON_SOURCE'
  | 'COLUMN_MISMATCH'
  | 'COPY_CONFLICT'
  /** A statement of `pgtide schema copy` failed on the target; nothing was changed. */
  | 'SCHEMA_APPLY_FAILED'
  | 'UNSUPPORTED_OBJECT'
  | 'UNSUPPORTED_VERSION'
  | 'DECODE_ERROR'
  | 'PROTOCOL_VIOLATION'
  | 'REPLICATION_STREAM_LOST'
  | 'APPLY_FAILED'
  /** A conflict apply stops on (policy `error`, or a constraint only the target has; docs/conflicts.md). */
  | 'APPLY_CONFLICT'
  /** A custom conflict resolver threw or returned no valid decision (docs/conflicts.md, "Custom resolver"). */
  | 'CONFLICT_RESOLVER_FAILED'
  | 'SEQUENCE_MISMATCH'
  | 'SEQUENCE_OVERFLOW'
  | 'STATE_CORRUPT'
  | 'SHUTDOWN'
  | 'HARNESS_FAILED'
  /** A streaming attempt made no progress with work pending (the stall watchdog). */
  | 'STALLED'
  /** `pgtide check`: a change could come back to a node it passed, or reach one twice (docs/topologies.md). */
  | 'TOPOLOGY_LOOP'
  /** The NDJSON sink could not write its output or state file (sinks/ndjson/file-errors.ts). */
  | 'SINK_WRITE_FAILED'
  /** The config asks a target kind for something it cannot do (e.g. an initial copy into NDJSON). */
  | 'UNSUPPORTED_FOR_TARGET'
  /** A replicated DDL change failed on the target (ddl.onError: stop); `pgtide ddl skip` moves past it. */
  | 'DDL_FAILED'
  /** A destructive DDL change waits for the user (ddl.destructive: pause). */
  | 'DDL_PAUSED'
  /** A pgtide.ddl message without a valid signature (logged and recorded; never applied). */
  | 'DDL_FORGED'
  /** `pgtide check --keys`: two sources that write into one target table hold the same key. */
  | 'KEYSPACE_OVERLAP'
  /** A column added on the source with values the target cannot reproduce, under ddl.rewriteVolatile: error. */
  | 'DDL_REWRITE_VOLATILE'
  /** A conflict setting needs the local row's commit time and the target has track_commit_timestamp off. */
  | 'COMMIT_TIMESTAMP_OFF'
  /** `pgtide skip` found no stopped transaction to skip (and no --lsn was given). */
  | 'NOTHING_TO_SKIP'
  /** `pgtide quarantine replay | drop`: no quarantined transaction with that id. */
  | 'QUARANTINE_NOT_FOUND'
  /** `pgtide quarantine replay`: the transaction failed again on the target; it stays quarantined. */
  | 'QUARANTINE_REPLAY_FAILED'
  /** conflicts.deltaColumns names a column that cannot take deltas (not numeric, no REPLICA IDENTITY FULL). */
  | 'DELTA_COLUMNS_REFUSED'
  | 'INTERNAL';

export interface PgtideErrorOptions {
  readonly sqlState?: string | undefined;
  readonly retryable?: boolean;
  /** The server's DETAIL (what exactly collided, which row), kept apart for status and logs. */
  readonly detail?: string | undefined;
  readonly cause?: unknown;
}

export class PgtideError extends Error {
  readonly code: ErrorCode;
  readonly sqlState: string | undefined;
  readonly retryable: boolean;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, message: string, options: PgtideErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PgtideError';
    this.code = code;
    this.sqlState = options.sqlState;
    this.retryable = options.retryable ?? false;
    this.detail = options.detail === undefined ? undefined : redact(options.detail);
  }
}

export class ConfigError extends PgtideError {
  constructor(message: string, options: PgtideErrorOptions = {}) {
    super('CONFIG_INVALID', message, options);
    this.name = 'ConfigError';
  }
}

/** Raised by the pgoutput decoder; `offset` is the byte where decoding failed. */
export class DecodeError extends PgtideError {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super('DECODE_ERROR', `pgoutput decode error at byte ${offset}: ${message}`);
    this.name = 'DecodeError';
    this.offset = offset;
  }
}

export { redact, rememberSecret } from './redaction.js';
import { redact } from './redaction.js';
import { tlsFailure } from './tls-failure.js';


/**
 * Maps an error from postgres.js or the network into a PgtideError. `what`
 * names the server role ("source", "target") so the message points at the
 * right config entry.
 */
export function fromServerError(error: unknown, what: string): PgtideError {
  if (error instanceof PgtideError) return error;
  const fields = serverErrorFields(error);
  const code = fields.code;
  const raw = redact(fields.message ?? String(error));
  const sqlState = code && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  const tls = code ? tlsFailure(code, raw, what) : undefined;
  if (tls) return new PgtideError('CONNECTION_FAILED', `TLS: ${tls.advice}. (${code}: ${raw})`, { retryable: tls.retryable, cause: error });
  const detail = fields.detail;
  if (code && NETWORK_CODES.has(code)) {
    return new PgtideError('CONNECTION_FAILED', `cannot reach the ${what} server (${code}): ${raw}. Check that it is running and that the ${what} connection string has the right host and port.`, { retryable: true, cause: error });
  }
  if (sqlState === '28P01' || sqlState === '28000') {
    return new PgtideError('AUTH_FAILED', `the ${what} server rejected the login: ${raw}. Check the user and password in the ${what} connection string.`, { sqlState, cause: error });
  }
  if (sqlState === '42501') {
    return new PgtideError('PERMISSION_DENIED', `permission denied on the ${what} server: ${raw}. Grant the privilege named above to the ${what} user (see docs/privileges.md).`, { sqlState, detail, cause: error });
  }
  if (sqlState === '3D000') {
    return new PgtideError('CONNECTION_FAILED', `the ${what} database does not exist: ${raw}. Create it or fix the database name in the ${what} connection string.`, { sqlState, cause: error });
  }
  const retryable = isRetried(classify(sqlState));
  return new PgtideError('INTERNAL', `${what} server error${sqlState ? ` ${sqlState}` : ''}: ${raw}${detail ? ` (DETAIL: ${redact(detail)})` : ''}`, { sqlState, retryable, detail, cause: error });
}
