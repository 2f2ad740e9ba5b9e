/**
 * The DDL stage: sees `pgtide.ddl` messages in stream order, inside their
 * source transaction, and hands each verified one to the sink as a barrier
 * (the sink applies it between the rows written before and after it).
 *
 * A message that does not verify (no signature, a wrong one, no key to check
 * it with) is refused: logged at ERROR level with code DDL_FORGED and
 * recorded in the target's ddl_unhandled table, and the stream goes on. Why
 * a skip and not a stop: any role that can connect to the source may call
 * pg_logical_emit_message, so stopping on a forged message would hand every
 * such role a way to halt replication; a forged message never carries a real
 * change, and a real change lost to a key mix-up still surfaces as
 * COLUMN_MISMATCH at the next row of that table.
 */
import type { Logger } from 'pino';
import type { CommitInfo, RowChange, TransactionInfo, TransactionSink } from '../changes/change.js';
import { formatLsn, type Lsn } from '../core/lsn.js';
import { messageText, verifyDdlMessage, type DdlEvent } from './ddl-event.js';
import { RenamedRelations } from './renamed-relations.js';

export const DDL_PREFIX = 'pgtide.ddl';

/** Which DDL message: its source transaction and its place among that transaction's DDL messages. */
export interface DdlPosition {
  readonly commitLsn: Lsn;
  /** 1 for the transaction's first DDL message, and so on (a DO block or a multi-statement query sends several). */
  readonly ordinal: number;
  readonly xid: number;
}

export const ddlPositionKey = (at: Pick<DdlPosition, 'commitLsn' | 'ordinal'>): string => `${formatLsn(at.commitLsn)}#${at.ordinal}`;

/** What the sink does with DDL (sinks/postgres/ddl-apply.ts). */
export interface DdlTarget {
  /** Applies a verified change in the open batch; the batch commits right after this source transaction. */
  apply(event: DdlEvent, at: DdlPosition): Promise<void>;
  /** `pgtide ddl skip` chose this one: not applied, recorded in the open batch (later changes diff from its result). */
  skip(event: DdlEvent, at: DdlPosition): Promise<void>;
  /** Records, in the open batch, a message that was refused (forged), and why. */
  refuse(at: DdlPosition, reason: string, text: string): Promise<void>;
}

export interface DdlStageOptions {
  readonly target: DdlTarget;
  /** The source's signing key (read again once when a signature does not match: the key may have been re-created). */
  readonly loadKey: () => Promise<Uint8Array | undefined>;
  /** DDL messages the user chose to skip (`pgtide ddl skip`), by ddlPositionKey. */
  readonly skip: ReadonlySet<string>;
  readonly logger: Logger;
}

export class DdlStage implements TransactionSink {
  readonly #next: TransactionSink;
  readonly #options: DdlStageOptions;
  #key: Uint8Array | undefined;
  #keyLoaded = false;
  #tx: TransactionInfo | undefined;
  #ordinal = 0;
  readonly #renamed = new RenamedRelations();
  applied = 0;
  refused = 0;

  constructor(next: TransactionSink, options: DdlStageOptions) {
    this.#next = next;
    this.#options = options;
  }

  begin(tx: TransactionInfo): void | Promise<void> {
    this.#tx = tx;
    this.#ordinal = 0;
    return this.#next.begin(tx);
  }

  change(change: RowChange): void | Promise<void> {
    if (change.kind !== 'message' || change.prefix !== DDL_PREFIX) return this.#next.change(this.#renamed.rename(change));
    return this.#ddl(change.content);
  }

  commit(info: CommitInfo): void | Promise<void> {
    this.#tx = undefined;
    return this.#next.commit(info);
  }

  async #ddl(content: Uint8Array): Promise<void> {
    const tx = this.#tx;
    if (!tx) return;
    const at: DdlPosition = { commitLsn: tx.commitLsn, ordinal: ++this.#ordinal, xid: tx.xid };
    if (!this.#keyLoaded) await this.#reloadKey();
    let verified = verifyDdlMessage(content, this.#key);
    if (!verified.ok && verified.reason !== 'unsigned' && verified.reason !== 'malformed') {
      await this.#reloadKey();
      verified = verifyDdlMessage(content, this.#key);
    }
    if (!verified.ok) {
      this.refused++;
      this.#options.logger.error({ code: 'DDL_FORGED', commitLsn: formatLsn(at.commitLsn), ordinal: at.ordinal, xid: tx.xid, reason: verified.reason },
        `refused a pgtide.ddl message that is not signed by pgtide's DDL capture (${verified.reason}); it was not applied and is recorded in pgtide.ddl_unhandled. Some role on the source called pg_logical_emit_message with pgtide's prefix: find it (xid ${tx.xid}) and revoke its access${verified.reason === 'no key' ? '; or run pgtide ddl install if capture is not installed' : ''}.`);
      await this.#options.target.refuse(at, verified.reason, messageText(content));
      return;
    }
    if (this.#options.skip.has(ddlPositionKey(at))) {
      this.#options.logger.warn({ commitLsn: formatLsn(at.commitLsn), ordinal: at.ordinal, tag: verified.event.tag }, 'skipping a DDL change as asked by pgtide ddl skip');
      await this.#options.target.skip(verified.event, at);
      this.#noteRenames(verified.event);
      return;
    }
    await this.#options.target.apply(verified.event, at);
    this.#noteRenames(verified.event);
    this.applied++;
  }

  /** A schema rename: rows still described under the old name go to the renamed table (renamed-relations.ts). */
  #noteRenames(event: DdlEvent): void {
    if (event.event !== 'schema') return;
    for (const t of event.tables) {
      if (t.after.schema === event.name) this.#renamed.note(t.oid, { schema: event.old, name: t.after.name }, { schema: t.after.schema, name: t.after.name });
    }
  }

  async #reloadKey(): Promise<void> {
    this.#key = await this.#options.loadKey();
    this.#keyLoaded = true;
  }
}
