/**
 * `pgtide ddl …`: DDL replication (docs/ddl.md).
 *
 *   install    event triggers on the source that capture schema changes as signed messages
 *   uninstall  removes them
 *   skip       the next start moves past the DDL change a stop named
 */
import type { Command } from 'commander';
import type { PgtideConfig } from '../control/config.js';
import { installCaptureCommand, skipStoppedCommand, uninstallCaptureCommand } from '../control/ddl-setup.js';
import { formatLsn } from '../core/lsn.js';

export function registerDdlCommands(program: Command, load: (path: string) => PgtideConfig): void {
  const ddl = program.command('ddl').description('replicate schema changes (DDL) from the source to the target');
  ddl.command('install')
    .description('install the DDL capture event triggers on the source (needs a superuser there)')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .action(async (options: { config: string }) => {
      const report = await installCaptureCommand(load(options.config));
      process.stdout.write(`DDL capture installed: ${report.tables} table(s) in scope; signing key ${report.keyCreated ? 'created' : 'kept'}\n`);
    });
  ddl.command('uninstall')
    .description('remove the DDL capture triggers, functions and key from the source')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .action(async (options: { config: string }) => {
      await uninstallCaptureCommand(load(options.config));
      process.stdout.write('DDL capture removed from the source\n');
    });
  ddl.command('skip')
    .description('move past the schema change the last stop (DDL_FAILED, DDL_PAUSED) named; start pgtide again afterwards')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .action(async (options: { config: string }) => {
      const skipped = await skipStoppedCommand(load(options.config));
      if (skipped.length === 0) {
        process.stdout.write('no stopped DDL change to skip\n');
        return;
      }
      for (const s of skipped) {
        process.stdout.write(`will skip DDL #${s.ordinal} of the source transaction committed at ${formatLsn(s.commitLsn)}${s.table ? ` on ${s.table}` : ''}: ${s.reason}\n`);
      }
      process.stdout.write('start pgtide again; the change is recorded in pgtide.ddl_unhandled\n');
    });
}
