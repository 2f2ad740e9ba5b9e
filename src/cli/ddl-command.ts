/**
 * `pgtide ddl …`: DDL replication (docs/ddl.md).
 *
 *   install    event triggers on the source that capture schema changes as signed messages
 *   exec       runs schema changes on the source with their signed messages (no superuser needed)
 *   uninstall  removes them
 *   skip       the next start moves past the DDL change a stop named
 */
import type { Command } from 'commander';
import type { PgtideConfig } from '../control/config.js';
import { execCommand, installCaptureCommand, skipStoppedCommand, uninstallCaptureCommand } from '../control/ddl-setup.js';
import { formatLsn } from '../core/lsn.js';

export function registerDdlCommands(program: Command, load: (path: string) => PgtideConfig): void {
  const ddl = program.command('ddl').description('replicate schema changes (DDL) from the source to the target');
  ddl.command('install')
    .description('install the DDL capture event triggers on the source (needs a superuser there)')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .option('--exec-only', 'no event triggers (no superuser needed): schema changes then go through `pgtide ddl exec`')
    .action(async (options: { config: string; execOnly?: boolean }) => {
      const report = await installCaptureCommand(load(options.config), options.execOnly ?? false);
      process.stdout.write(`DDL capture installed${options.execOnly ? ' for pgtide ddl exec (no event triggers)' : ''}: ${report.tables} table(s) in scope; signing key ${report.keyCreated ? 'created' : 'kept'}\n`);
    });
  ddl.command('exec')
    .description('run schema-changing SQL on the source together with its signed DDL message (DDL only: rows it writes would reach the target before the change)')
    .argument('<sql>', 'the statement(s)')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .action(async (statements: string, options: { config: string }) => {
      await execCommand(load(options.config), statements);
      process.stdout.write('done\n');
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
