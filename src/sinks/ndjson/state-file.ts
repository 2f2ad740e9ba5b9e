/**
 * The NDJSON sink's state: what the `pgtide` schema holds for a PostgreSQL
 * target, for a target that is a file. One small JSON file records the
 * subscription (slot, publication, source system and timeline, whether this
 * state created the slot, the slot's start point), the position written
 * (commit and end LSN of the last transaction whose line is durable) and the
 * highest position acknowledged to the source.
 *
 * Each change rewrites the whole file: write a temporary file, fsync it,
 * rename it over the old one, fsync the folder. A crash leaves either the old
 * or the new state, never a torn one. Writes are serialized, so an
 * acknowledgement recorded while a batch's position is being written cannot
 * overtake it with an older picture.
 *
 * It answers the slot guardian (control/slot-guardian.ts) exactly as the
 * state store on a PostgreSQL target does, so a file target is guarded the
 * same way: a slot this state did not create is never dropped, and a slot
 * confirmed past what the file holds stops pgtide.
 */
import { open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { formatLsn, parseLsn, type Lsn } from '../../core/lsn.js';
import { PgtideError } from '../../core/errors.js';
import type { SubscriptionRow } from '../../state/state-store.js';
import { fileError } from './file-errors.js';

const FORMAT = 'pgtide-ndjson-state';

interface Stored {
  readonly format: typeof FORMAT;
  readonly version: 1;
  readonly subscription: string;
  readonly slot: string;
  readonly publication: string;
  readonly sourceSystemId: string | null;
  readonly sourceTimeline: number | null;
  readonly slotState: 'creating' | 'created' | null;
  readonly startLsn: string | null;
  /** The last transaction whose line is durable in the output. */
  readonly commitLsn: string | null;
  readonly endLsn: string | null;
  readonly commitTime: string | null;
  readonly ackedLsn: string | null;
  readonly ackedAt: string | null;
}

export interface WrittenPosition {
  readonly commitLsn: Lsn;
  readonly endLsn: Lsn;
}

export class NdjsonStateFile {
  readonly path: string;
  readonly subscription: string;
  #state: Stored | undefined;
  #writing: Promise<void> = Promise.resolve();

  private constructor(file: string, subscription: string, state: Stored | undefined) {
    this.path = file;
    this.subscription = subscription;
    this.#state = state;
  }

  static async load(file: string, subscription: string): Promise<NdjsonStateFile> {
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ENOENT') throw fileError(error, 'reading the state file', file);
    }
    if (text === undefined) return new NdjsonStateFile(file, subscription, undefined);
    let state: Stored;
    try {
      state = JSON.parse(text) as Stored;
    } catch (error) {
      throw new PgtideError('STATE_CORRUPT', `the NDJSON state file ${file} is not valid JSON (${String(error)}). It is replaced only by rename, so something else wrote it; restore it, or delete it together with the slot (\`pgtide drop\`) to start over.`);
    }
    if (state.format !== FORMAT || state.version !== 1) {
      throw new PgtideError('STATE_CORRUPT', `${file} is not a pgtide NDJSON state file (format ${String(state.format)}, version ${String(state.version)}); point target.statePath at pgtide's own file.`);
    }
    if (state.subscription !== subscription) {
      throw new PgtideError('STATE_CORRUPT', `the NDJSON state file ${file} belongs to subscription "${state.subscription}", not "${subscription}". Give each subscription its own target.path / target.statePath.`);
    }
    return new NdjsonStateFile(file, subscription, state);
  }

  /** The same picture of the subscription the target's `pgtide.subscription` row gives. */
  async getSubscription(): Promise<SubscriptionRow | undefined> {
    const s = this.#state;
    if (!s) return undefined;
    return {
      name: s.subscription, slotName: s.slot, publication: s.publication, sourceSystemId: s.sourceSystemId,
      startLsn: s.startLsn ? parseLsn(s.startLsn) : undefined, slotState: s.slotState, sourceTimeline: s.sourceTimeline,
      ackedLsn: s.ackedLsn ? parseLsn(s.ackedLsn) : undefined, ackedAt: s.ackedAt ? new Date(s.ackedAt) : null,
    };
  }

  /** Commit time of the last transaction written (ISO 8601, UTC), for status. */
  get commitTime(): string | null { return this.#state?.commitTime ?? null; }

  get position(): WrittenPosition | undefined {
    const s = this.#state;
    return s?.commitLsn && s.endLsn ? { commitLsn: parseLsn(s.commitLsn), endLsn: parseLsn(s.endLsn) } : undefined;
  }

  async createSubscription(slot: string, publication: string, sourceSystemId: string): Promise<void> {
    await this.#update((s) => (s ? { ...s, slot, publication, sourceSystemId } : {
      format: FORMAT, version: 1, subscription: this.subscription, slot, publication, sourceSystemId, sourceTimeline: null,
      slotState: null, startLsn: null, commitLsn: null, endLsn: null, commitTime: null, ackedLsn: null, ackedAt: null,
    }));
  }

  /** Saved before CREATE_REPLICATION_SLOT, so a first start that died can still tell the slot is its own. */
  async markSlotCreating(): Promise<void> {
    await this.#update((s) => ({ ...this.#require(s), slotState: 'creating' }));
  }

  async markSlotCreated(startLsn: Lsn, timeline: number): Promise<void> {
    await this.#update((s) => ({ ...this.#require(s), slotState: 'created', startLsn: formatLsn(startLsn), sourceTimeline: timeline, ackedLsn: null, ackedAt: null }));
  }

  async setSourceTimeline(timeline: number): Promise<void> {
    await this.#update((s) => ({ ...this.#require(s), sourceTimeline: timeline }));
  }

  /** Saved before the position is acknowledged to the source; never moves back. */
  async recordAck(lsn: Lsn): Promise<void> {
    await this.#update((s) => {
      const state = this.#require(s);
      return state.ackedLsn && parseLsn(state.ackedLsn) >= lsn ? undefined : { ...state, ackedLsn: formatLsn(lsn), ackedAt: new Date().toISOString() };
    });
  }

  /** Saved only after the lines up to this transaction are durable in the output. */
  async setPosition(position: WrittenPosition, commitTime: string | null): Promise<void> {
    await this.#update((s) => ({ ...this.#require(s), commitLsn: formatLsn(position.commitLsn), endLsn: formatLsn(position.endLsn), commitTime }));
  }

  #require(state: Stored | undefined): Stored {
    if (!state) throw new PgtideError('INTERNAL', `the NDJSON state of subscription "${this.subscription}" was used before it was created`);
    return state;
  }

  /**
   * Serialized read-modify-write. The picture in memory changes only once the
   * new file is in place: what the guardian and the sink read is always what a
   * restart would read (an acknowledgement whose write failed is not taken as
   * recorded, so it is not sent).
   */
  #update(change: (state: Stored | undefined) => Stored | undefined): Promise<void> {
    const write = this.#writing.then(async () => {
      const next = change(this.#state);
      if (next === undefined) return;
      await this.#write(next);
      this.#state = next;
    });
    // A failed write must not poison the next one; the caller sees this one's error.
    this.#writing = write.catch(() => {});
    return write;
  }

  /** Atomic replacement: temp file, fsync, rename, fsync of the folder (the rename itself must survive a crash). */
  async #write(next: Stored): Promise<void> {
    const temp = `${this.path}.tmp`;
    try {
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(`${JSON.stringify(next, null, 2)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.path);
      const dir = await open(path.dirname(path.resolve(this.path)), 'r');
      try { await dir.sync(); } finally { await dir.close(); }
    } catch (error) {
      throw fileError(error, 'writing the state file', this.path);
    }
  }
}
