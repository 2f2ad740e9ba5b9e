/**
 * `pgtide schema …`: the target's schema from the source's catalogs, without pg_dump.
 *
 *   copy   create on the target what the replicated tables need and it lacks
 *          (--apply-diff: also the safe fixes of differences; docs/schema.md)
 *   diff   print the differences; exit 0 when there are none, 2 when there are
 */
import type { Command } from 'commander';
import type { PgtideConfig } from '../control/config.js';
import { createLogger } from '../control/logger.js';
import { diffSchema, runSchemaCopy } from '../control/schema-job.js';
import { formatSchemaReport, hasDifferences } from '../schema/report.js';

/** Exit code of `schema diff` (and of `schema copy` when differences remain): 1 is taken by errors. */
export const SCHEMA_DIFFERS_EXIT = 2;

type Out = (text: string) => void;

export function registerSchemaCommands(program: Command, load: (configPath: string) => PgtideConfig, out: Out = (text) => { process.stdout.write(text); }): void {
  const schema = program.command('schema').description('create the replicated tables\' schema on the target from the source\'s catalogs, and compare the two');

  schema.command('copy')
    .description('create on the target every schema, type, sequence, table, constraint, index and comment the replicated tables need and it lacks; differences are reported, not changed, unless --apply-diff')
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .option('--apply-diff', 'also apply the safe fixes of differences (add columns, constraints, indexes, enum values; defaults; comments); refused ones are listed')
    .action(async (options: { config: string; applyDiff?: boolean }) => {
      const result = await runSchemaCopy(load(options.config), { applyDiff: options.applyDiff === true, logger: createLogger() });
      out(formatSchemaReport(result.comparison, result.applied) + '\n');
      const ran = new Set(result.applied.map((s) => s.sql));
      const left = result.comparison.plan.differences.filter((d) => !(d.fix.length > 0 && d.fix.every((f) => ran.has(f.sql))));
      if (left.length > 0) process.exitCode = SCHEMA_DIFFERS_EXIT;
    });

  schema.command('diff')
    .description(`print the differences between the source and the target for the replicated tables; exit 0 when there are none, ${SCHEMA_DIFFERS_EXIT} when there are`)
    .option('-c, --config <file>', 'config file', 'pgtide.yaml')
    .action(async (options: { config: string }) => {
      const comparison = await diffSchema(load(options.config));
      out(formatSchemaReport(comparison) + '\n');
      if (hasDifferences(comparison)) process.exitCode = SCHEMA_DIFFERS_EXIT;
    });
}
