/**
 * Where NDJSON lines go: a file pgtide appends to, or standard output.
 *
 * A file can be made durable (fsync) and cut back (truncate), which is what
 * makes the sink exactly-once across kill -9: on open, a torn last line (a
 * crash in the middle of a write) is cut off, and the last complete line
 * tells how far the file got. Standard output can do neither: what went into
 * the pipe is gone, so with `-` a crash between the write and the state
 * update repeats transactions (at least once, see docs/ndjson.md).
 */
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fileError } from './file-errors.js';

export interface LineOutput {
  readonly name: string;
  /** True when lines can be read back, made durable and cut back. */
  readonly isFile: boolean;
  /** Bytes in the output (files only; 0 for stdout). */
  readonly size: number;
  append(text: string): Promise<void>;
  /** Everything appended is on disk once this resolves (files); a no-op for stdout. */
  sync(): Promise<void>;
  /** Cuts the file back to `size` bytes (files only). */
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

const TAIL_CHUNK = 64 * 1024;

export class FileOutput implements LineOutput {
  readonly name: string;
  readonly isFile = true;
  readonly #handle: FileHandle;
  #size: number;

  private constructor(name: string, handle: FileHandle, size: number) {
    this.name = name;
    this.#handle = handle;
    this.#size = size;
  }

  static async open(file: string): Promise<FileOutput> {
    let handle: FileHandle | undefined;
    try {
      // O_APPEND: every write lands at the end, also after a truncate.
      handle = await open(file, 'a+');
      const { size } = await handle.stat();
      if (size === 0) {
        // A new file's name must survive a crash as much as the lines fsynced into it.
        const dir = await open(path.dirname(path.resolve(file)), 'r');
        try { await dir.sync(); } finally { await dir.close(); }
      }
      return new FileOutput(file, handle, size);
    } catch (error) {
      await handle?.close().catch(() => {});
      throw fileError(error, 'opening the output file', file);
    }
  }

  get size(): number { return this.#size; }

  async append(text: string): Promise<void> {
    const bytes = Buffer.from(text, 'utf8');
    try {
      await this.#handle.appendFile(bytes);
    } catch (error) {
      throw fileError(error, 'appending to', this.name);
    }
    this.#size += bytes.length;
  }

  async sync(): Promise<void> {
    try {
      await this.#handle.sync();
    } catch (error) {
      throw fileError(error, 'fsync of', this.name);
    }
  }

  async truncate(size: number): Promise<void> {
    try {
      await this.#handle.truncate(size);
      await this.#handle.sync();
    } catch (error) {
      throw fileError(error, 'truncating', this.name);
    }
    this.#size = size;
  }

  /**
   * The file's last complete line (without its newline) and where complete
   * lines end: anything after the last newline is a torn write.
   */
  async lastLine(): Promise<{ readonly line: string | undefined; readonly completeSize: number }> {
    const lastNewline = await this.#lastIndexOf(0x0a, this.#size);
    if (lastNewline < 0) return { line: undefined, completeSize: 0 };
    const start = (await this.#lastIndexOf(0x0a, lastNewline)) + 1;
    const buffer = Buffer.alloc(lastNewline - start);
    await this.#read(buffer, start);
    return { line: buffer.toString('utf8'), completeSize: lastNewline + 1 };
  }

  async close(): Promise<void> {
    await this.#handle.close().catch(() => {});
  }

  /** Position of the last `byte` before `end`, reading backwards in chunks; -1 when there is none. */
  async #lastIndexOf(byte: number, end: number): Promise<number> {
    const buffer = Buffer.alloc(TAIL_CHUNK);
    for (let to = end; to > 0;) {
      const from = Math.max(0, to - TAIL_CHUNK);
      const chunk = buffer.subarray(0, to - from);
      await this.#read(chunk, from);
      const at = chunk.lastIndexOf(byte);
      if (at >= 0) return from + at;
      to = from;
    }
    return -1;
  }

  async #read(into: Buffer, position: number): Promise<void> {
    try {
      let done = 0;
      while (done < into.length) {
        const { bytesRead } = await this.#handle.read(into, done, into.length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (error) {
      throw fileError(error, 'reading', this.name);
    }
  }
}

export class StdoutOutput implements LineOutput {
  readonly name = 'standard output';
  readonly isFile = false;
  readonly size = 0;

  append(text: string): Promise<void> {
    return new Promise((resolve, reject) => {
      // The callback fires once the data left the process's buffer: backpressure from a slow reader.
      process.stdout.write(text, (error) => (error ? reject(fileError(error, 'writing to', this.name)) : resolve()));
    });
  }

  async sync(): Promise<void> {}

  async truncate(): Promise<void> {
    throw fileError(new Error('standard output cannot be cut back'), 'truncating', this.name);
  }

  async close(): Promise<void> {}
}
