/**
 * The stages a pipeline needs beyond one source and one target, composed in
 * front of the gate: origin filter (loop prevention) → source tag
 * (consolidation) → gate. Streamed transactions applied while they stream
 * skip the sink chain, so the same stages wrap the direct applier too.
 * Stages a pipeline does not need are left out, so a plain one-way edge runs
 * exactly the path it ran before.
 */
import type { StreamedTransactionApplier, TransactionSink } from '../changes/change.js';
import { OriginFilter } from './origin-filter.js';
import type { OriginMatcher } from './origin-policy.js';
import { SourceTagStage, type SourceTag } from './source-tag.js';

export interface TopologyStages {
  readonly sink: TransactionSink;
  readonly direct: StreamedTransactionApplier | undefined;
  /** Undefined when every origin passes. */
  readonly originFilter: OriginFilter | undefined;
}

export function topologyStages(gate: TransactionSink, direct: StreamedTransactionApplier | undefined, options: { readonly origins: OriginMatcher; readonly sourceTag: SourceTag | undefined }): TopologyStages {
  let sink = gate;
  let streamed = direct;
  if (options.sourceTag) {
    const tag = new SourceTagStage(sink, options.sourceTag);
    sink = tag;
    streamed = tag.streamed(streamed);
  }
  let originFilter: OriginFilter | undefined;
  if (!options.origins.passesAll) {
    originFilter = new OriginFilter(sink, options.origins);
    sink = originFilter;
    streamed = originFilter.streamed(streamed);
  }
  return { sink, direct: streamed, originFilter };
}
