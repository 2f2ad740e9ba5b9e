import type { CopyProgress } from '../copy/copy-options.js';
/**
 * Shows the initial copy's progress. On a terminal it redraws one block in
 * place (a summary line and one line per table being copied) with ANSI cursor
 * moves; anywhere else (a log file, journald, CI) it writes plain lines: one per
 * table in progress every few seconds and one when a table is done, since
 * cursor moves would only garble a log.
 */

export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressReporterOptions {
  readonly stream?: ProgressStream;
  /** Receives the plain lines when the stream is not a terminal (default: written to the stream). */
  readonly logger?: (line: string) => void;
  /** Redraw (terminal) or log (otherwise) interval; default 250 ms on a terminal, 5 s otherwise. */
  readonly intervalMs?: number;
  /** For tests. */
  readonly now?: () => number;
}

export interface ProgressReporter {
  update(p: readonly CopyProgress[]): void;
  finish(): void;
}

/** Tables shown on a terminal at once; parallelism is normally far below this. */
const MAX_TABLE_LINES = 20;
const MB = 1_000_000;

function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

/** Share of the table copied, or undefined without an estimate. Capped below 100% until done: estimates lag. */
export function fractionDone(p: CopyProgress): number | undefined {
  if (p.done) return 1;
  const fraction = p.estimatedRows > 0 ? p.rows / p.estimatedRows : p.estimatedBytes > 0 ? p.bytes / p.estimatedBytes : undefined;
  return fraction === undefined ? undefined : Math.min(fraction, 0.99);
}

export function formatTableLine(p: CopyProgress, now: number): string {
  const seconds = p.startedAt > 0 ? Math.max(0.001, (now - p.startedAt) / 1000) : 0;
  const fraction = fractionDone(p);
  const percent = fraction === undefined ? '   ?%' : `${(fraction * 100).toFixed(0).padStart(4)}%`;
  const rate = seconds > 0 ? `${(p.bytes / MB / seconds).toFixed(1)} MB/s` : '';
  let eta = '';
  if (p.done) eta = `done in ${formatDuration(seconds)}`;
  else if (fraction !== undefined && fraction > 0 && seconds > 0) eta = `ETA ${formatDuration((seconds * (1 - fraction)) / fraction)}`;
  return `${p.table}  ${p.rows.toLocaleString('en-US')} rows  ${(p.bytes / MB).toFixed(1)} MB ${percent}  ${rate}  ${eta}`.trimEnd();
}

export function formatSummary(all: readonly CopyProgress[], now: number): string {
  const started = all.filter((p) => p.startedAt > 0);
  const first = started.reduce((min, p) => Math.min(min, p.startedAt), Number.POSITIVE_INFINITY);
  const seconds = Number.isFinite(first) ? Math.max(0.001, (now - first) / 1000) : 0;
  const rows = all.reduce((sum, p) => sum + p.rows, 0);
  const bytes = all.reduce((sum, p) => sum + p.bytes, 0);
  const done = all.filter((p) => p.done).length;
  const rate = seconds > 0 ? ` · ${(bytes / MB / seconds).toFixed(1)} MB/s` : '';
  return `initial copy: ${done}/${all.length} tables done · ${rows.toLocaleString('en-US')} rows · ${(bytes / MB).toFixed(1)} MB${rate} · ${formatDuration(seconds)}`;
}

export function createProgressReporter(options: ProgressReporterOptions = {}): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? Date.now;
  const tty = stream.isTTY === true;
  const intervalMs = options.intervalMs ?? (tty ? 250 : 5000);
  const log = options.logger ?? ((line: string) => { stream.write(`${line}\n`); });
  let latest: readonly CopyProgress[] = [];
  let timer: NodeJS.Timeout | undefined;
  let drawnLines = 0;
  let finished = false;
  const reportedDone = new Set<string>();

  const fit = (line: string): string => {
    // A wrapped line would break the cursor arithmetic of the next redraw.
    const width = (stream.columns ?? 120) - 1;
    return line.length > width ? `${line.slice(0, Math.max(0, width - 1))}…` : line;
  };

  const draw = (): void => {
    const at = now();
    const active = latest.filter((p) => p.startedAt > 0 && !p.done);
    const lines = [formatSummary(latest, at), ...active.slice(0, MAX_TABLE_LINES).map((p) => `  ${formatTableLine(p, at)}`)];
    if (active.length > MAX_TABLE_LINES) lines.push(`  … and ${active.length - MAX_TABLE_LINES} more`);
    // Back to the start of the previous block, rewrite each line, clear what is left below.
    let out = drawnLines > 0 ? `\x1b[${drawnLines}F` : '';
    for (const line of lines) out += `\x1b[2K${fit(line)}\n`;
    out += '\x1b[J';
    stream.write(out);
    drawnLines = lines.length;
  };

  const logActive = (): void => {
    const at = now();
    for (const p of latest) if (p.startedAt > 0 && !p.done) log(`copying ${formatTableLine(p, at)}`);
  };

  const tick = (): void => {
    if (tty) draw();
    else logActive();
  };

  return {
    update(p: readonly CopyProgress[]): void {
      if (finished) return;
      latest = p;
      if (!tty) {
        for (const table of p) {
          if (table.done && !reportedDone.has(table.table)) {
            reportedDone.add(table.table);
            log(`copied ${formatTableLine(table, now())}`);
          }
        }
      }
      if (!timer) {
        timer = setInterval(tick, intervalMs);
        // Progress output must never keep the process alive.
        timer.unref();
        if (tty) draw();
      }
    },
    finish(): void {
      if (finished) return;
      finished = true;
      if (timer) clearInterval(timer);
      timer = undefined;
      if (tty) draw();
      else log(formatSummary(latest, now()));
    },
  };
}
