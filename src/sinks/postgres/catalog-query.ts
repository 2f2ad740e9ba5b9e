/**
 * Runs a catalog query. The apply writer passes its own connection's queue,
 * so the lookup sees the open batch's transaction and never cuts into a COPY.
 * Its own file: table-catalog.ts and missing-columns.ts both use it, and
 * table-catalog.ts calls missing-columns.ts.
 */
export type CatalogQuery = (text: string, params: string[]) => Promise<readonly unknown[]>;
