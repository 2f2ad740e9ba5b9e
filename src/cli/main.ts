#!/usr/bin/env node
/**
 * The `pgtide` command line. Each command is a thin shell over a module in
 * control/: parse options, load the config, call, print. Errors are printed
 * as `error [CODE]: message` (no stack trace, no password) with exit code 1.
 */
import { Command } from 'commander';
import { loadConfigFile, type PgtideConfig } from '../control/config.js';
import { PgtideError, redact } from '../core/errors.js';
import { createLogger } from '../control/logger.js';
import { Engine } from '../control/engine.js';
import { createProgressReporter } from '../control/progress.js';
import { collectStatus, formatStatus } from '../control/status.js';
import { dropSubscription } from '../control/drop.js';
import { resyncSubscription } from '../control/resync.js';
import { Metrics } from '../control/metrics.js';
import { registerSequencesCommands } from './sequences-command.js';
import { registerSchemaCommands } from './schema-command.js';
import { runDemo } from './demo.js';
import { registerCheckCommand } from './check-command.js';
import { registerDdlCommands } from './ddl-command.js';
import { registerConflictsCommand } from './conflicts-command.js';
import { registerJoinCommand } from './join-command.js';
import { registerQuarantineCommands } from './quarantine-command.js';

const program = new Command();
program
  .name('pgtide')
  .description('PostgreSQL logical replication: initial copy, streaming apply, sequences, crash-safe resume')
  .showHelpAfterError();

const load = (path: string): PgtideConfig => loadConfigFile(path);

program.command('start')
  .description('copy the published tables (first run), then stream changes until SIGINT/SIGTERM')
  .option('-c, --config <file>', 'config file', 'pgtide.yaml')
  .action(async (options: { config: string }) => {
    const config = load(options.config);
    const logger = createLogger();
    const progress = createProgressReporter({ stream: process.stderr, logger: (line) => logger.info(line) });
    const controller = new AbortController();
    let signals = 0;
    const stop = (signal: string) => {
      signals++;
      if (signals > 1) {
        logger.warn('second signal: exiting without a clean shutdown (the target stays consistent; the next start resumes)');
        process.exit(130);
      }
      logger.info({ signal }, 'stopping: finishing or rolling back the transaction in flight');
      controller.abort();
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    const metrics = config.metrics.port !== undefined ? new Metrics(config.name) : undefined;
    const closeMetrics = metrics && config.metrics.port !== undefined ? await metrics.serve(config.metrics.port) : undefined;
    if (closeMetrics) logger.info({ port: config.metrics.port }, 'metrics on http://127.0.0.1:<port>/metrics');
    const engine = new Engine(config, logger, {
      onCopyProgress: (p) => { progress.update(p); metrics?.copyProgress(p); },
      onCopyDone: () => progress.finish(),
      ...(metrics ? { onApplied: (info) => metrics.applied(info), onSequenceReport: (r) => metrics.sequences(r), onConflicts: (events) => metrics.conflicts(events), onQuarantined: () => metrics.quarantined() } : {}),
    });
    try {
      await engine.run(controller.signal);
    } finally {
      await closeMetrics?.();
    }
  });

program.command('status')
  .description('table states, applied position, lag, slot WAL retention and sequences')
  .option('-c, --config <file>', 'config file', 'pgtide.yaml')
  .option('--json', 'print JSON')
  .action(async (options: { config: string; json?: boolean }) => {
    const report = await collectStatus(load(options.config));
    if (options.json) {
      process.stdout.write(JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
    } else {
      process.stdout.write(formatStatus(report) + '\n');
    }
  });

program.command('drop')
  .description('remove the slot and publication pgtide created on the source, and its state on the target')
  .option('-c, --config <file>', 'config file', 'pgtide.yaml')
  .action(async (options: { config: string }) => {
    const report = await dropSubscription(load(options.config));
    process.stdout.write(`slot dropped: ${report.droppedSlot ? 'yes' : report.slotNotOurs ? 'no (this subscription\'s state did not create it; drop it by hand if it is not used: SELECT pg_drop_replication_slot(...))' : 'no (none)'}\npublication dropped: ${report.droppedPublication ? 'yes' : 'no'}\norigin dropped: ${report.droppedOrigin ? 'yes' : 'no'}\nstate removed: ${report.droppedState ? 'yes' : 'no'}\n`);
  });

program.command('resync')
  .description('drop this subscription\'s slot (only if its state created it) and reset its tables: the next start copies everything again')
  .option('-c, --config <file>', 'config file', 'pgtide.yaml')
  .action(async (options: { config: string }) => {
    const report = await resyncSubscription(load(options.config));
    process.stdout.write(`slot dropped: ${report.droppedSlot ? 'yes' : 'no (none)'}\ntables reset to init: ${report.tables}\nstart pgtide to create a new slot and copy every table again\n`);
  });

program.command('demo')
  .description('start two embedded PostgreSQL clusters, replicate a sample schema live, and verify row for row')
  .option('--major <n>', 'PostgreSQL major version (14-18)', '18')
  .option('--rows <n>', 'rows to load before the copy', '200000')
  .option('--seconds <n>', 'duration of the live workload', '15')
  .action(async (options: { major: string; rows: string; seconds: string }) => {
    const ok = await runDemo({ major: Number(options.major), rows: Number(options.rows), seconds: Number(options.seconds) });
    process.exitCode = ok ? 0 : 1;
  });

registerSequencesCommands(program, load);
registerSchemaCommands(program, load);
registerCheckCommand(program, load);
registerDdlCommands(program, load);
registerConflictsCommand(program, load);
registerJoinCommand(program, load);
registerQuarantineCommands(program, load);

function printError(error: unknown): void {
  if (error instanceof PgtideError) {
    process.stderr.write(`error [${error.code}]${error.sqlState ? ` (SQLSTATE ${error.sqlState})` : ''}: ${redact(error.message)}\n`);
  } else {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`error [INTERNAL]: ${redact(message)}\n`);
    if (process.env.PGTIDE_DEBUG && error instanceof Error && error.stack) process.stderr.write(redact(error.stack) + '\n');
  }
}

// A library callback that throws outside any awaited promise (seen in postgres.js when a socket
// closes under a pending write) must not end in a raw stack trace. Exiting is safe: the target
// holds the applied position, and the next start resumes from it.
process.on('uncaughtException', (error) => { printError(error); process.exit(1); });
process.on('unhandledRejection', (error) => { printError(error); process.exit(1); });

program.parseAsync(process.argv).catch((error: unknown) => {
  printError(error);
  process.exit(1);
});
