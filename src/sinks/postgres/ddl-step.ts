/**
 * One statement of a DDL plan (ddl-plan.ts), in its own file so the planners
 * of each object kind (sequences, comments, schemas, partitions, objects) and
 * the plan itself share it without importing each other in a circle.
 */
export interface DdlStep {
  readonly sql: string;
  readonly destructive: boolean;
  /** For messages: what the step does. */
  readonly what: string;
  /** An index the source built CONCURRENTLY: built so on a side connection after the batch commits. */
  readonly concurrentIndex?: { readonly name: string; readonly qualifiedName: string };
}
