/**
 * Metric rows, the console table and the JSON result file.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Side } from '../runners/types.js';

/** Whether a smaller or a larger figure is better; `info` rows are context (sizes, workload rates). */
export type Better = 'lower' | 'higher' | 'info';

export interface MetricSpec {
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  readonly better: Better;
}

export type Values = Readonly<Record<string, number>>;

export interface Failure {
  readonly side: Side | 'limit' | 'setup';
  readonly kind: 'mismatch' | 'error';
  readonly message: string;
}

export interface ScenarioOutcome {
  readonly sizes: Readonly<Record<string, string | number>>;
  readonly metrics: readonly MetricSpec[];
  readonly values: { readonly pgtide?: Values; readonly builtin?: Values; readonly limit?: Values };
  /** What the limit column means for this scenario, and anything else worth knowing. */
  readonly notes: readonly string[];
  readonly failures: readonly Failure[];
  readonly skipped?: string;
}

export interface MetricRow extends MetricSpec {
  readonly pgtide: number | null;
  readonly builtin: number | null;
  readonly limit: number | null;
  /** pgtide / built-in, raw. */
  readonly ratio: number | null;
  /** How many times better pgtide is than built-in (>1 = pgtide better). */
  readonly speedup: number | null;
  /** Each side as a percentage of the limit (100% = as good as the limit). */
  readonly pgtidePctOfLimit: number | null;
  readonly builtinPctOfLimit: number | null;
}

function finite(value: number | undefined): number | null {
  return value !== undefined && Number.isFinite(value) ? value : null;
}

function pctOfLimit(better: Better, value: number | null, limit: number | null): number | null {
  if (value === null || limit === null || better === 'info' || value === 0 || limit === 0) return null;
  return better === 'lower' ? (limit / value) * 100 : (value / limit) * 100;
}

export function buildRows(outcome: ScenarioOutcome): MetricRow[] {
  return outcome.metrics.map((spec) => {
    const pgtide = finite(outcome.values.pgtide?.[spec.key]);
    const builtin = finite(outcome.values.builtin?.[spec.key]);
    const limit = finite(outcome.values.limit?.[spec.key]);
    const ratio = pgtide !== null && builtin !== null && builtin !== 0 ? pgtide / builtin : null;
    let speedup: number | null = null;
    if (ratio !== null && ratio !== 0 && spec.better !== 'info') speedup = spec.better === 'lower' ? 1 / ratio : ratio;
    return { ...spec, pgtide, builtin, limit, ratio, speedup, pgtidePctOfLimit: pctOfLimit(spec.better, pgtide, limit), builtinPctOfLimit: pctOfLimit(spec.better, builtin, limit) };
  });
}

export function formatNumber(value: number | null): string {
  if (value === null) return '—';
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs === 0) return '0';
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

function formatTimes(value: number | null): string {
  return value === null ? '—' : `${value.toFixed(2)}×`;
}

function formatPct(value: number | null): string {
  return value === null ? '—' : `${value.toFixed(0)}%`;
}

export function renderTable(rows: readonly MetricRow[]): string {
  const header = ['metric', 'unit', 'pgtide', 'built-in', 'pgtide/built-in', 'speedup', 'limit', 'pgtide % of limit', 'built-in % of limit'];
  const body = rows.map((r) => [
    r.label, r.unit, formatNumber(r.pgtide), formatNumber(r.builtin),
    r.ratio === null ? '—' : r.ratio.toFixed(2), formatTimes(r.speedup), formatNumber(r.limit),
    formatPct(r.pgtidePctOfLimit), formatPct(r.builtinPctOfLimit),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((line) => line[i]!.length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

export interface ResultFile {
  readonly scenario: string;
  readonly title: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly seconds: number;
  readonly postgresMajor: number;
  readonly machine: { readonly cpus: number; readonly cpuModel: string; readonly memoryBytes: number; readonly node: string; readonly platform: string };
  readonly options: Readonly<Record<string, unknown>>;
  readonly sizes: Readonly<Record<string, string | number>>;
  readonly rows: readonly MetricRow[];
  readonly notes: readonly string[];
  readonly failures: readonly Failure[];
  readonly skipped: string | null;
  readonly ok: boolean;
}

export function machineInfo(): ResultFile['machine'] {
  return { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memoryBytes: os.totalmem(), node: process.version, platform: `${os.platform()} ${os.release()}` };
}

export function writeResult(dir: string, result: ResultFile): string {
  mkdirSync(dir, { recursive: true });
  const stamp = result.startedAt.replace(/[:.]/g, '-');
  const file = path.join(dir, `${stamp}-${result.scenario}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}
