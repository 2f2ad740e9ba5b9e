/**
 * Consolidation (several sources into one target): every row this edge writes
 * carries its source's tag in a column only the target has.
 *
 * The stage adds the column to each relation and its value to each tuple, so
 * the sink writes it like any other column, with no change to its statements.
 * The column is also made part of the replica identity key (or of the full old
 * row): an UPDATE or DELETE from this source only ever matches this source's
 * rows, so sources whose keys overlap can share a table whose primary key
 * includes the tag. With a primary key that leaves the tag out, the match on
 * the tag is merely redundant.
 *
 * A TRUNCATE passes unchanged: like the built-in subscriber, it empties the
 * whole target table, other sources' rows included (docs/topologies.md).
 */
import type { CommitInfo, RowChange, StreamedTransactionApplier, TransactionInfo, TransactionSink } from '../changes/change.js';
import type { Relation } from '../changes/relation-cache.js';
import type { Tuple, TupleValue } from '../protocol/messages.js';
import { PgtideError } from '../core/errors.js';

export interface SourceTag {
  readonly column: string;
  readonly value: string;
}

/** text: the writer casts every value to the target column's type, so the tag's declared type does not matter. */
const TEXT_OID = 25;

export class SourceTagger {
  readonly #tag: SourceTag;
  readonly #value: TupleValue;
  /** One tagged relation per source relation definition: downstream caches key on the object. */
  readonly #tagged = new WeakMap<Relation, Relation>();

  constructor(tag: SourceTag) {
    this.#tag = tag;
    this.#value = { kind: 'text', value: tag.value };
  }

  change(change: RowChange): RowChange {
    switch (change.kind) {
      case 'message':
        return change;
      case 'truncate':
        return { ...change, relations: change.relations.map((r) => this.relation(r)) };
      case 'insert':
        return { ...change, relation: this.relation(change.relation), newTuple: this.#tuple(change.newTuple) };
      case 'update':
        return {
          ...change, relation: this.relation(change.relation), newTuple: this.#tuple(change.newTuple),
          oldTuple: change.oldTuple === undefined ? undefined : this.#tuple(change.oldTuple),
        };
      case 'delete':
        return { ...change, relation: this.relation(change.relation), oldTuple: this.#tuple(change.oldTuple) };
    }
  }

  relation(relation: Relation): Relation {
    let tagged = this.#tagged.get(relation);
    if (tagged) return tagged;
    const { column } = this.#tag;
    if (relation.columns.some((c) => c.name === column)) {
      throw new PgtideError('COLUMN_MISMATCH', `sourceTag.column "${column}" is a column of ${relation.qualifiedName} on the source too, so its value would come from two places. Choose a column that only the target has (ALTER TABLE ... ADD COLUMN on the target), or leave the table out of this edge.`);
    }
    const index = relation.columns.length;
    tagged = {
      ...relation,
      columns: [...relation.columns, { name: column, isKey: true, typeOid: TEXT_OID, typeMod: -1 }],
      // FULL matches the whole old row, which now includes the tag; a key gains the tag.
      keyIndexes: relation.replicaIdentity === 'full' || relation.keyIndexes.length === 0 ? relation.keyIndexes : [...relation.keyIndexes, index],
    };
    this.#tagged.set(relation, tagged);
    return tagged;
  }

  #tuple(tuple: Tuple): Tuple {
    return [...tuple, this.#value];
  }
}

/** The TransactionSink stage, in front of the gate. */
export class SourceTagStage implements TransactionSink {
  readonly #next: TransactionSink;
  readonly #tagger: SourceTagger;

  constructor(next: TransactionSink, tag: SourceTag) {
    this.#next = next;
    this.#tagger = new SourceTagger(tag);
  }

  begin(tx: TransactionInfo): void | Promise<void> { return this.#next.begin(tx); }
  change(change: RowChange): void | Promise<void> { return this.#next.change(this.#tagger.change(change)); }
  commit(info: CommitInfo): void | Promise<void> { return this.#next.commit(info); }

  /** Streamed transactions applied while they stream bypass the sink chain: tag them on that path too. */
  streamed(inner: StreamedTransactionApplier | undefined): StreamedTransactionApplier | undefined {
    if (!inner) return undefined;
    const tagger = this.#tagger;
    return {
      start: (xid, origin) => inner.start(xid, origin),
      change: (xid, subxid, change) => inner.change(xid, subxid, tagger.change(change)),
      chunkStart: (xid) => inner.chunkStart(xid),
      chunkEnd: (xid) => inner.chunkEnd(xid),
      abort: (xid, subxid) => inner.abort(xid, subxid),
      commit: (xid, info, origin) => inner.commit(xid, info, origin),
      reset: () => inner.reset(),
      get openCount() { return inner.openCount; },
    };
  }
}
