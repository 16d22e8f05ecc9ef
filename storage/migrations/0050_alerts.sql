-- 0050_alerts: battery-safety alerts raised by the rule engine (alerts/, docs/alerts.md).
--
-- A plain table on both PostgreSQL and TimescaleDB: alerts are few (rows per episode, not per
-- frame) and are updated in place while open, which hypertable compression would fight.
-- Idempotent (IF NOT EXISTS everywhere) so re-running the migration is harmless. Run by
-- storage.migrate with search_path = <schema>, public: names are unqualified, and alerts.store
-- uses the search_path of the connection it is given.
--
-- Times: opened_at / last_seen_at / cleared_at / trigger_times are the frames' own event
-- times (what the engine decided on); created_at / updated_at are when the row was written;
-- acked_at / acked_by / ack_note are set by an operator (`nev-ingest alerts ack`).

CREATE TABLE IF NOT EXISTS alerts (
    id              bigserial PRIMARY KEY,          -- what operators type: alerts ack 42
    entity_kind     text NOT NULL,                  -- vehicle | charger | battery
    entity_id       text NOT NULL,                  -- VIN, charger id, pack code
    rule_id         text NOT NULL,
    rule_version    text NOT NULL,                  -- hash of the rule's definition
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'major', 'critical')),
    title           text NOT NULL,
    opened_at       timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    cleared_at      timestamptz,
    clear_reason    text,                           -- condition | rule_removed
    peak_value      double precision,
    last_value      double precision,
    frame_count     integer NOT NULL DEFAULT 1,
    trigger_times   timestamptz[] NOT NULL DEFAULT '{}',
    late            boolean NOT NULL DEFAULT false, -- raised from reissued (0x03) data
    kafka_partition integer,                        -- source partition: rebuild on assignment
    acked_at        timestamptz,
    acked_by        text,
    ack_note        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Replaying a batch re-sends the same raise with the same opened_at: one row, never two.
    CONSTRAINT alerts_episode_key UNIQUE (entity_kind, entity_id, rule_id, opened_at)
);

-- At most one OPEN alert per (entity, rule), whatever happens upstream (restarts, partition
-- moves, two workers briefly owning one partition): the database itself refuses a second.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open
    ON alerts (entity_kind, entity_id, rule_id) WHERE cleared_at IS NULL;

-- load_open() on assignment: open alerts by partition, and the recently cleared ones.
CREATE INDEX IF NOT EXISTS alerts_open_by_partition
    ON alerts (entity_kind, kafka_partition) WHERE cleared_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_cleared_at
    ON alerts (cleared_at) WHERE cleared_at IS NOT NULL;

-- Operators and regulators: an entity's history, and what happened when.
CREATE INDEX IF NOT EXISTS alerts_entity_time ON alerts (entity_id, opened_at DESC);
CREATE INDEX IF NOT EXISTS alerts_opened_at ON alerts (opened_at DESC);
