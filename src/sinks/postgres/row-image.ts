/**
 * The new row of an UPDATE as the built-in apply worker sees it.
 *
 * pgoutput marks a column whose value is stored out of line and was not
 * changed as unchanged TOAST (`u`) in the new tuple. That includes a key
 * column: a text key with STORAGE EXTERNAL and a value past the TOAST
 * threshold. Its value then travels in the old key tuple, which PostgreSQL
 * logs whenever a key column is stored out of line (ExtractReplicaIdentity in
 * heapam.c). The key's new value is needed to find the row and to write it,
 * so it is taken from there. Other unchanged-TOAST columns stay `u`: the
 * target keeps its value, as with the built-in worker.
 */
import type { Tuple, TupleValue } from '../../protocol/messages.js';
import type { RowChange } from '../../changes/change.js';

type Update = Extract<RowChange, { kind: 'update' }>;

/** The change itself when nothing needs completing (the usual case: no allocation). */
export function withUnchangedKeyFromOld(change: Update): Update {
  const old = change.oldTuple;
  if (!old || change.relation.replicaIdentity === 'full') return change;
  let completed: TupleValue[] | undefined;
  for (const i of change.relation.keyIndexes) {
    if (change.newTuple[i]?.kind !== 'unchanged') continue;
    const before = old[i];
    if (!before || before.kind === 'unchanged') continue;
    completed ??= [...change.newTuple];
    completed[i] = before;
  }
  return completed ? { ...change, newTuple: completed as Tuple } : change;
}
