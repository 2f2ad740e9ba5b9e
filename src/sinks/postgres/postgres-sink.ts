/**
 * Opens the PostgreSQL sink for one streaming attempt: the main apply writer
 * and, with `apply.streamedApply`, the road that applies large streamed
 * transactions on writers of their own while they stream (streamed-apply.ts).
 */
import { ApplyWriter, type ApplyWriterOptions } from './apply-writer.js';
import { DirectStreamedApply } from './streamed-apply.js';
import type { OpenedSink } from '../sink.js';

export interface PostgresSinkOptions {
  readonly writer: ApplyWriterOptions;
  readonly streamedApply: boolean;
  /** Told the backend pid of every apply session opened (main and streamed), so stalled ones can be ended. */
  readonly onSession?: (backendPid: number) => void;
}

export interface OpenedPostgresSink extends OpenedSink {
  readonly sink: ApplyWriter;
}

export async function openPostgresSink(options: PostgresSinkOptions): Promise<OpenedPostgresSink> {
  const writer = await ApplyWriter.open(options.writer);
  if (writer.backendPid !== undefined) options.onSession?.(writer.backendPid);
  const streamed = options.streamedApply
    ? new DirectStreamedApply({
      main: writer, maxOpen: 2,
      openWriter: async () => {
        const one = await ApplyWriter.open({ ...options.writer, holdsOrigin: false, netEffect: false });
        if (one.backendPid !== undefined) options.onSession?.(one.backendPid);
        return one;
      },
    })
    : undefined;
  return { sink: writer, streamed, stats: writer.stats };
}
