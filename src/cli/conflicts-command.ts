/** `pgtide conflicts`: the conflict log on the target, summarised and listed (docs/conflicts.md). */
import { Command, InvalidArgumentError } from 'commander';
import type { PgtideConfig } from '../control/config.js';
import { collectConflicts, formatConflicts } from '../control/conflicts-report.js';

export function registerConflictsCommand(program: Command, load: (path: string) => PgtideConfig): void {
  program.command('conflicts')
    .description('conflicts resolved by policy: a summary by kind, resolution and table, and the latest rows of pgtide.conflict_log')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .option('--limit <n>', 'latest rows to list', (value: string) => {
      const n = Number(value);
      if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('--limit must be a whole number.');
      return n;
    }, 20)
    .option('--json', 'print JSON')
    .action(async (options: { config: string; limit: number; json?: boolean }) => {
      const report = await collectConflicts(load(options.config), options.limit);
      process.stdout.write((options.json ? JSON.stringify(report, null, 2) : formatConflicts(report)) + '\n');
    });
}
