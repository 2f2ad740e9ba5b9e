/** `pgtide skip` and `pgtide quarantine list | replay | drop` (docs/quarantine.md). */
import type { Command } from 'commander';
import type { PgtideConfig } from '../control/config.js';
import { dropCommand, listCommand, parseLsnOption, replayCommand, skipCommand } from '../control/quarantine.js';
import { formatLsn } from '../core/lsn.js';
import { PgtideError } from '../core/errors.js';

function requireId(id: string | undefined, what: string): string {
  if (id === undefined) throw new PgtideError('CONFIG_INVALID', `pgtide quarantine ${what} needs --id N (pgtide quarantine list shows the ids)`);
  return id;
}

export function registerQuarantineCommands(program: Command, load: (path: string) => PgtideConfig): void {
  program.command('skip')
    .description('after apply stopped on a deterministic error: the next start quarantines the failing source transaction (or the one committed at --lsn) and goes on')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .option('--lsn <lsn>', 'the commit LSN of the source transaction to skip')
    .action(async (options: { config: string; lsn?: string }) => {
      const stop = await skipCommand(load(options.config), options.lsn === undefined ? undefined : parseLsnOption(options.lsn));
      process.stdout.write(stop.skipLsn !== undefined
        ? `the next start quarantines the source transaction committed at ${formatLsn(stop.skipLsn)} and applies the rest\n`
        : `the next start applies the stopped source transactions (commit LSN up to ${formatLsn(stop.untilLsn)}) one by one and quarantines the one that fails: ${stop.errorCode}: ${stop.errorMessage}\n`);
    });

  const quarantine = program.command('quarantine').description('source transactions held in pgtide.quarantine instead of being applied');
  quarantine.command('list')
    .description('what is held: id, xid, commit LSN, tables, error')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .option('--json', 'print JSON')
    .action(async (options: { config: string; json?: boolean }) => {
      const rows = await listCommand(load(options.config));
      if (options.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      if (rows.length === 0) {
        process.stdout.write('no quarantined transactions\n');
        return;
      }
      for (const r of rows) {
        process.stdout.write(`#${r.id}  xid ${r.sourceXid}  commit LSN ${r.commitLsn}  ${r.changeCount} change(s) on ${r.tables.join(', ') || '-'}  quarantined ${r.quarantinedAt.toISOString()}\n    ${r.errorCode}${r.sqlState ? ` (SQLSTATE ${r.sqlState})` : ''}: ${r.errorMessage}\n`);
      }
    });
  quarantine.command('replay')
    .description('apply a quarantined transaction now (after fixing its cause), in one transaction that also removes it from quarantine')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .option('--id <n>', 'the quarantine id')
    .action(async (options: { config: string; id?: string }) => {
      const { row, applied } = await replayCommand(load(options.config), requireId(options.id, 'replay'));
      process.stdout.write(`replayed #${row.id} (xid ${row.sourceXid}, commit LSN ${row.commitLsn}): ${applied} change(s) applied; removed from quarantine\n`);
    });
  quarantine.command('drop')
    .description('delete a quarantined transaction without applying it')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .option('--id <n>', 'the quarantine id')
    .action(async (options: { config: string; id?: string }) => {
      const id = requireId(options.id, 'drop');
      await dropCommand(load(options.config), id);
      process.stdout.write(`dropped #${id} from quarantine\n`);
    });
}
