/**
 * Opens the PostgreSQL sink for one streaming attempt: the main apply writer
 * and, with `apply.streamedApply`, the road that applies large streamed
 * transactions on writers of their own while they stream (streamed-apply.ts).
 */
import { ApplyWriter, type ApplyWriterOptions } from './apply-writer.js';
import { DirectStreamedApply } from './streamed-apply.js';
import { ALWAYS_AWAITED } from './resolver-replay.js';
import type { OpenedSink } from '../sink.js';
import type { TransactionSink } from '../../changes/change.js';

export interface PostgresSinkOptions {
  readonly writer: ApplyWriterOptions;
  readonly streamedApply: boolean;
  /** Streamed transactions applied at once, each on its own connection. */
  readonly streamedConnections: number;
  /**
   * The origin a streamed connection writes under (slot 0 … streamedConnections - 1): its rows
   * carry an origin from the first change, so a reverse edge filters them (docs/topologies.md).
   */
  readonly streamedOrigin: (slot: number) => string;
  /** Told the backend pid of every apply session opened (main and streamed), so stalled ones can be ended. */
  readonly onSession?: (backendPid: number) => void;
  /** The DDL stage in front of a writer (docs/ddl.md): the main one and each streamed one. */
  readonly ddlStage?: (writer: ApplyWriter) => TransactionSink;
}

export interface OpenedPostgresSink extends OpenedSink {
  readonly sink: ApplyWriter;
}

export async function openPostgresSink(options: PostgresSinkOptions): Promise<OpenedPostgresSink> {
  const writer = await ApplyWriter.open(options.writer);
  if (writer.backendPid !== undefined) options.onSession?.(writer.backendPid);
  const streamed = options.streamedApply
    ? new DirectStreamedApply({
      main: writer, maxOpen: options.streamedConnections,
      ...(options.ddlStage ? { ddlStage: options.ddlStage } : {}),
      openWriter: async (slot) => {
        const one = await ApplyWriter.open({ ...options.writer, holdsOrigin: false, netEffect: false, markOrigin: options.streamedOrigin(slot), resolverModes: ALWAYS_AWAITED });
        if (one.backendPid !== undefined) options.onSession?.(one.backendPid);
        return one;
      },
    })
    : undefined;
  return { sink: writer, streamed, stats: writer.stats, entry: options.ddlStage?.(writer) };
}
