import type { Readable } from 'node:stream';
import type { Queryable } from './copy-in.js';

// COPY streams over postgres.js, with workarounds for two bugs of 3.4.x.

/**
 * `COPY … TO STDOUT`. When postgres.js pauses the socket for backpressure and
 * CopyDone arrives in the same network chunk, the stream ends while the socket
 * stays paused, so the next query on the connection never gets its answer
 * (porsager/postgres#499). The stream's read() only resumes the socket, so
 * calling it once more after 'end' is the fix.
 */
export async function copyOut(sql: Queryable, statement: string): Promise<Readable> {
  const stream = await sql.unsafe(statement).readable();
  stream.once('end', () => {
    try {
      (stream as unknown as { _read(size: number): void })._read(0);
    } catch { /* the connection is already gone; the next query reports it */ }
  });
  return stream;
}

// ---------------------------------------------------------------------------
