/**
 * pgtide keeps its state in the `pgtide` schema of the target database, so any
 * pgtide process can resume a subscription from the target alone. Migrations
 * are append-only: never edit a shipped step, add a new one.
 */
import type postgres from 'postgres';

export const STATE_SCHEMA = 'pgtide';

export const MIGRATIONS: readonly string[] = [
  // 1: subscriptions and per-table copy state
  `
  CREATE TABLE pgtide.subscription (
    name           text PRIMARY KEY,
    slot_name      text NOT NULL,
    publication    text NOT NULL,
    source_system_id text,
    -- LSN of the slot's consistent point: streaming starts here the first time.
    start_lsn      pg_lsn,
    created_at     timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE pgtide.table_state (
    subscription   text NOT NULL REFERENCES pgtide.subscription(name) ON DELETE CASCADE,
    schema_name    text NOT NULL,
    table_name     text NOT NULL,
    state          text NOT NULL CHECK (state IN ('init', 'copying', 'ready')),
    -- The copy of this table corresponds to this LSN: streamed changes apply only when commit LSN > sync_lsn.
    sync_lsn       pg_lsn,
    rows_copied    bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, schema_name, table_name)
  );
  -- Written in the same target transaction as the data it describes (the origin holds the LSN; this adds the time for lag).
  CREATE TABLE pgtide.apply_progress (
    subscription   text PRIMARY KEY REFERENCES pgtide.subscription(name) ON DELETE CASCADE,
    end_lsn        pg_lsn NOT NULL,
    commit_time    timestamptz,
    applied_at     timestamptz NOT NULL DEFAULT now(),
    transactions   bigint NOT NULL DEFAULT 0
  );
  `,
  // 2: sequences
  `
  CREATE TABLE pgtide.sequence_state (
    subscription    text NOT NULL,
    schema_name     text NOT NULL,
    sequence_name   text NOT NULL,
    source_value    bigint,
    source_is_called boolean,
    target_value    bigint,
    synced_at       timestamptz,
    PRIMARY KEY (subscription, schema_name, sequence_name)
  );
  `,
  // 3: a copy in ctid ranges commits range by range; a retry must know the rows it finds are its own
  `
  ALTER TABLE pgtide.table_state ADD COLUMN copy_owns_rows boolean NOT NULL DEFAULT false;
  `,
  // 4: the last error the engine retried or stopped on, for `pgtide status` (last-error.ts).
  // No foreign key to subscription: a start can fail before the subscription row exists.
  `
  CREATE TABLE pgtide.last_error (
    subscription   text PRIMARY KEY,
    code           text NOT NULL,
    sql_state      text,
    message        text NOT NULL,
    detail         text,
    retrying       boolean NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now()
  );
  `,
  // 5: the slot and state guardian (src/control/slot-guardian.ts)
  `
  ALTER TABLE pgtide.subscription
    -- 'creating' is written (and committed) before CREATE_REPLICATION_SLOT, 'created' after it:
    -- only a slot this subscription's state says it made may ever be dropped or recreated.
    ADD COLUMN slot_state text CHECK (slot_state IN ('creating', 'created')),
    ADD COLUMN source_timeline int,
    -- Highest flush position acknowledged to the source, written BEFORE the acknowledgement
    -- is sent; with apply_progress it bounds the slot's confirmed_flush_lsn.
    ADD COLUMN acked_lsn pg_lsn,
    ADD COLUMN acked_at timestamptz;
  -- A subscription that already recorded its start point created its slot.
  UPDATE pgtide.subscription SET slot_state = 'created' WHERE start_lsn IS NOT NULL;
  `,
  // 6: DDL replication (sinks/postgres/ddl-apply.ts, state/ddl-state.ts)
  `
  -- The source table's last applied catalog snapshot, written in the batch that applied it.
  CREATE TABLE pgtide.ddl_snapshot (
    subscription   text NOT NULL,
    table_oid      bigint NOT NULL,
    schema_name    text NOT NULL,
    table_name     text NOT NULL,
    snapshot       jsonb NOT NULL,
    commit_lsn     pg_lsn NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, table_oid)
  );
  -- DDL messages not applied: forged ones, ones a policy skipped, the one a stop is waiting on.
  CREATE TABLE pgtide.ddl_unhandled (
    subscription   text NOT NULL,
    commit_lsn     pg_lsn NOT NULL,
    ordinal        int NOT NULL,
    status         text NOT NULL CHECK (status IN ('stopped', 'skip', 'skipped', 'forged', 'policy')),
    table_name     text,
    statement      text,
    reason         text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, commit_lsn, ordinal)
  );
  -- Indexes the source built CONCURRENTLY: built the same way on a side connection once the
  -- batch that recorded them committed (sinks/postgres/deferred-indexes.ts).
  CREATE TABLE pgtide.ddl_deferred (
    subscription   text NOT NULL,
    seq            bigserial,
    table_oid      bigint NOT NULL,
    index_name     text NOT NULL,
    qualified_name text NOT NULL,
    statement      text NOT NULL,
    commit_lsn     pg_lsn NOT NULL,
    PRIMARY KEY (subscription, seq)
  );
  `,
  // 7: the conflict log (docs/conflicts.md, sinks/postgres/conflict-statements.ts). Rows are
  // written by the apply statement that resolved the conflict, so they commit (or roll back)
  // with it: each conflict is logged exactly once, kill -9 included.
  `
  CREATE TABLE pgtide.conflict_log (
    id                 bigserial PRIMARY KEY,
    subscription       text NOT NULL,
    kind               text NOT NULL,
    resolution         text NOT NULL,
    -- Quoted qualified name of the target table.
    table_name         text NOT NULL,
    key                jsonb,
    remote_old         jsonb,
    remote_new         jsonb,
    local_row          jsonb,
    local_origin       text,
    local_commit_time  timestamptz,
    source_xid         bigint,
    source_commit_lsn  pg_lsn,
    source_commit_time timestamptz,
    source_origin      text,
    logged_at          timestamptz NOT NULL DEFAULT now()
  );
  CREATE INDEX conflict_log_subscription ON pgtide.conflict_log (subscription, id);
  -- Values over 64 kB are replaced by a marker, so logging a conflict never fails or bloats the log.
  CREATE FUNCTION pgtide.conflict_value(row_values jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(row_values) IS DISTINCT FROM 'object' THEN row_values ELSE
      (SELECT coalesce(jsonb_object_agg(e.key, CASE WHEN octet_length(e.value::text) > 65536
                 THEN to_jsonb('pgtide: value of ' || octet_length(e.value::text) || ' bytes not logged') ELSE e.value END), '{}'::jsonb)
         FROM jsonb_each(row_values) e) END
  $$;
  -- Raised inside an apply statement when the conflict policy is error: the batch rolls back and
  -- the writer turns SQLSTATE PTC01 into APPLY_CONFLICT (apply-failure.ts). HINT carries the kind.
  CREATE FUNCTION pgtide.conflict_stop(kind text, table_name text, key jsonb) RETURNS int LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION USING ERRCODE = 'PTC01', MESSAGE = format('conflict %s on %s: key %s', kind, table_name, key),
      DETAIL = key::text, HINT = kind;
  END
  $$;
  `,
  // 8: the unique index a logged update_exists / multiple_unique_conflicts met (sinks/postgres/unique-conflicts.ts).
  `
  ALTER TABLE pgtide.conflict_log ADD COLUMN IF NOT EXISTS index_name text;
  `,
  // 9: tombstones of the deletes pgtide applied (sinks/postgres/tombstones.ts), for update_deleted.
  // One per table and key, whichever subscription applied the delete: in a mesh the delete and
  // the late update arrive on different edges. Pruned by age (recorded_at, the target's clock).
  `
  CREATE TABLE pgtide.tombstone (
    table_name          text NOT NULL,
    -- The replica identity key as a JSON object of text values (as conflict_log.key).
    key                 jsonb NOT NULL,
    subscription        text NOT NULL,
    source_origin       text,
    delete_commit_time  timestamptz,
    delete_commit_lsn   pg_lsn,
    source_xid          bigint,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, key)
  );
  CREATE INDEX tombstone_recorded_at ON pgtide.tombstone (recorded_at);
  `,
  // 10: quarantine (dead letters) of failing source transactions and the stop a `pgtide skip`
  // acts on (docs/quarantine.md, state/quarantine-state.ts, sinks/postgres/isolation-stage.ts).
  // A quarantine row is written in the apply transaction that moves the applied position past
  // its transaction: UNIQUE (subscription, commit_lsn) makes a second copy impossible.
  `
  CREATE TABLE pgtide.quarantine (
    id             bigserial PRIMARY KEY,
    subscription   text NOT NULL,
    source_xid     bigint NOT NULL,
    commit_lsn     pg_lsn NOT NULL,
    end_lsn        pg_lsn NOT NULL,
    commit_time    timestamptz,
    origin         text,
    error_code     text NOT NULL,
    sql_state      text,
    error_message  text NOT NULL,
    tables         text[] NOT NULL,
    changes        jsonb NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription, commit_lsn)
  );
  -- The batch apply stopped on (its last commit LSN) and whether the user asked to skip past it.
  CREATE TABLE pgtide.apply_stop (
    subscription   text PRIMARY KEY,
    from_lsn       pg_lsn NOT NULL,
    until_lsn      pg_lsn NOT NULL,
    error_code     text NOT NULL,
    sql_state      text,
    error_message  text NOT NULL,
    skip           boolean NOT NULL DEFAULT false,
    skip_lsn       pg_lsn,
    recorded_at    timestamptz NOT NULL DEFAULT now()
  );
  `,
];

/**
 * Creates or upgrades the state schema. Serialised with an advisory lock so two
 * pgtide processes starting together do not race.
 */
export async function migrateStateSchema(sql: postgres.Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('pgtide.migrate'))`);
    // Looked up first: CREATE SCHEMA IF NOT EXISTS checks CREATE on the database before it
    // looks for the schema, and a least-privilege role may own a schema made for it.
    const [schema] = await tx.unsafe<{ present: boolean }[]>(`SELECT to_regnamespace('pgtide') IS NOT NULL AS present`);
    if (!schema?.present) await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS pgtide`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS pgtide.schema_version (version int NOT NULL)`);
    const rows = await tx.unsafe<{ version: number }[]>(`SELECT version FROM pgtide.schema_version`);
    const current = rows[0]?.version ?? 0;
    for (let step = current; step < MIGRATIONS.length; step++) {
      await tx.unsafe(MIGRATIONS[step]!);
    }
    if (rows.length === 0) await tx.unsafe(`INSERT INTO pgtide.schema_version VALUES ($1)`, [MIGRATIONS.length]);
    else if (current < MIGRATIONS.length) await tx.unsafe(`UPDATE pgtide.schema_version SET version = $1`, [MIGRATIONS.length]);
  });
}
