/**
 * pino logger. Log lines go to stderr so stdout stays for command output.
 * Connection strings are never logged; any string field is passed through
 * redact() as a second line of defence.
 */
import pino, { type Logger } from 'pino';
import { redact } from '../core/errors.js';

export type { Logger } from 'pino';

export function createLogger(options: { level?: string; pretty?: boolean } = {}): Logger {
  return pino({
    level: options.level ?? process.env.PGTIDE_LOG_LEVEL ?? 'info',
    base: undefined,
    formatters: { level: (label) => ({ level: label }) },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((a) => (typeof a === 'string' ? redact(a) : a)) as Parameters<typeof method>);
      },
    },
  }, pino.destination({ fd: 2, sync: true }));
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
