/**
 * File system failures of the NDJSON sink as PgtideErrors. A full or failing
 * disk may recover, and a retry starts again from the recorded position, so
 * it is retried; a path that cannot be written (permissions, a missing
 * folder, the reader of stdout gone) will fail the same way every time.
 */
import { PgtideError } from '../../core/errors.js';

const TRANSIENT = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EAGAIN', 'EBUSY', 'EINTR']);

export function fileError(error: unknown, what: string, file: string): PgtideError {
  if (error instanceof PgtideError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const text = typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
  const hint = code === 'EPIPE'
    ? 'the process reading pgtide\'s standard output closed it; restart pgtide with a reader attached'
    : code === 'ENOENT' ? 'create the folder first, or fix target.path / target.statePath in the config'
      : code === 'EACCES' || code === 'EPERM' ? 'give the user pgtide runs as write access to it'
        : code === 'ENOSPC' || code === 'EDQUOT' ? 'free disk space; pgtide retries and resumes from the recorded position'
          : 'check the file and the disk; pgtide resumes from the recorded position';
  return new PgtideError('SINK_WRITE_FAILED', `${what} ${file} failed (${text}): ${hint}.`, { retryable: typeof code === 'string' && TRANSIENT.has(code), cause: error });
}
