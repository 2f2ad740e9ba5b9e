/**
 * Memory of the replicator processes, read from /proc/<pid>/status.
 *
 * RssAnon (private anonymous memory) is compared, not VmRSS: a PostgreSQL
 * backend's RSS includes every shared_buffers page it touched, which says
 * nothing about what the apply or walsender process itself allocated. VmHWM
 * (peak RSS) is reported for the pgtide child, where there is no shared memory.
 */
import { readFileSync } from 'node:fs';
import { errorMessage } from './cleanup.js';

export interface ProcMemory {
  readonly vmHwmBytes: number;
  readonly vmRssBytes: number;
  readonly rssAnonBytes: number;
}

export function readProcMemory(pid: number): ProcMemory | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined; // the process is gone; a sampler simply skips it
  }
  const kb = (field: string): number => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match ? Number(match[1]) * 1024 : 0;
  };
  return { vmHwmBytes: kb('VmHWM'), vmRssBytes: kb('VmRSS'), rssAnonBytes: kb('RssAnon') };
}

export interface ProcessGroups {
  /** The apply side: pgtide's node process, or the built-in apply leader and its parallel apply workers. */
  readonly replicator: readonly number[];
  /** The source walsender(s) serving the replicator's slot. */
  readonly walsender: readonly number[];
}

export interface MemoryPeaks {
  /** Largest sum of RssAnon over the replicator processes seen at one sample. */
  readonly replicatorAnonBytes: number;
  readonly walsenderAnonBytes: number;
  readonly samples: number;
}

/** Samples the processes every `intervalMs` until stopped. */
export class MemorySampler {
  readonly #pids: () => Promise<ProcessGroups>;
  readonly #intervalMs: number;
  #replicator = 0;
  #walsender = 0;
  #samples = 0;
  #running = false;
  #loop: Promise<void> | undefined;
  #lastError: string | undefined;

  constructor(pids: () => Promise<ProcessGroups>, intervalMs = 200) {
    this.#pids = pids;
    this.#intervalMs = intervalMs;
  }

  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (this.#running) {
      try {
        this.sampleOnce(await this.#pids());
      } catch (error) {
        // A failed pid lookup (e.g. during a restart) only loses one sample.
        this.#lastError = errorMessage(error);
      }
      await new Promise((resolve) => setTimeout(resolve, this.#intervalMs));
    }
  }

  sampleOnce(groups: ProcessGroups): void {
    const sum = (pids: readonly number[]) => pids.reduce((total, pid) => total + (readProcMemory(pid)?.rssAnonBytes ?? 0), 0);
    this.#replicator = Math.max(this.#replicator, sum(groups.replicator));
    this.#walsender = Math.max(this.#walsender, sum(groups.walsender));
    this.#samples++;
  }

  async stop(): Promise<MemoryPeaks> {
    this.#running = false;
    await this.#loop;
    return { replicatorAnonBytes: this.#replicator, walsenderAnonBytes: this.#walsender, samples: this.#samples };
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }
}
