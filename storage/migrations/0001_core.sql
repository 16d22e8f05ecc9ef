-- 0001_core: the non-time-series tables, identical on PostgreSQL and TimescaleDB.
--
-- Run by storage.migrate with search_path = <schema>, public, inside one transaction, under the
-- migration advisory lock. Idempotent (IF NOT EXISTS) like every migration here.

-- Exactly-once into the database: the next Kafka offset of each partition, stored in the same
-- transaction as the rows it covers. A consumer seeks here on assignment, and a batch whose
-- start is behind the stored offset is fenced (another consumer already wrote it).
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group  text        NOT NULL,
    topic           text        NOT NULL,   -- the topic names the entity kind (nev.vehicle.raw)
    partition       integer     NOT NULL,
    next_offset     bigint      NOT NULL,   -- first offset NOT yet stored
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- One row per entity: "where is it now, what is its SOC now". Upserted once per batch per
-- entity by the writer; only a newer frame time replaces a row (reissued data cannot roll the
-- state back). Each value column keeps its latest non-null value. fillfactor leaves room for
-- HOT updates (no indexed column changes on update), so upserts do not bloat the primary key.
-- entity_id is COLLATE "C" so the primary key also serves fleet-prefix LIKE 'LSV%' scans.
CREATE TABLE IF NOT EXISTS latest_state (
    entity_kind         text        NOT NULL,   -- vehicle | charger | battery
    entity_id           text COLLATE "C" NOT NULL,  -- VIN / charger id / pack code
    ts                  timestamptz NOT NULL,   -- frame time of the latest frame
    received_at         timestamptz,            -- gateway receive time of that frame
    edition             smallint,
    vehicle_state       smallint,
    charging_state      smallint,
    run_mode            smallint,
    speed_kmh           real,
    odometer_km         double precision,
    total_voltage_v     real,
    total_current_a     real,
    soc_pct             smallint,
    insulation_kohm     integer,
    position_valid      boolean,
    longitude           double precision,
    latitude            double precision,
    max_cell_voltage_v  real,
    min_cell_voltage_v  real,
    max_temp_c          smallint,
    min_temp_c          smallint,
    max_alarm_level     smallint,
    general_flags       bigint,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_kind, entity_id)
) WITH (fillfactor = 70);
