-- 0002_timeseries: the per-frame tables, one column list for both flavours.
--
-- Each table's columns follow ingest/decoders/rows.py: a NamedTuple's field order is its table's
-- column order, so rows go to binary COPY as they are (a unit test checks rows, storage/tables.py
-- and these columns agree). The placeholder after each table is where the flavours differ
-- inside a statement (storage/migration_files.py): plain PostgreSQL range-partitions by frame time, TimescaleDB makes hypertables
-- (0002_timeseries.timescale.sql); what else a flavour adds follows in its own file.
--
-- Primary keys make the same frame stored twice one row: (vin, ts) identifies a frame's data.

-- One wide row per real-time (0x02) / reissue (0x03) frame.
CREATE TABLE IF NOT EXISTS vehicle_telemetry (
    vin                     text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,   -- frame collection time
    received_at             timestamptz,            -- gateway receive time
    edition                 smallint    NOT NULL,   -- 2016 | 2025
    command                 smallint    NOT NULL,   -- 2 real-time, 3 reissue
    vehicle_state           smallint,
    charging_state          smallint,
    run_mode                smallint,
    speed_kmh               real,
    odometer_km             double precision,
    total_voltage_v         real,
    total_current_a         real,                   -- positive: discharge
    soc_pct                 smallint,
    dcdc_state              smallint,
    gear                    smallint,
    insulation_kohm         integer,
    accel_pedal_pct         smallint,
    brake_pedal_pct         smallint,
    position_valid          boolean,
    longitude               double precision,
    latitude                double precision,
    max_cell_voltage_v      real,
    max_cell_voltage_pack   smallint,
    max_cell_voltage_cell   integer,
    min_cell_voltage_v      real,
    min_cell_voltage_pack   smallint,
    min_cell_voltage_cell   integer,
    max_temp_c              smallint,
    max_temp_pack           smallint,
    max_temp_probe          integer,
    min_temp_c              smallint,
    min_temp_pack           smallint,
    min_temp_probe          integer,
    extremes_derived        boolean     NOT NULL,
    max_alarm_level         smallint,
    general_flags           bigint,                 -- u32 bit mask
    fault_count             integer     NOT NULL,
    PRIMARY KEY (vin, ts)
) {{partitioned_by_ts}};

-- One row per drive motor per frame.
CREATE TABLE IF NOT EXISTS drive_motor_telemetry (
    vin                     text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    seq                     smallint    NOT NULL,
    state                   smallint,
    controller_temp_c       smallint,
    speed_rpm               integer,
    torque_nm               real,
    temp_c                  smallint,
    controller_voltage_v    real,
    controller_current_a    real,
    PRIMARY KEY (vin, ts, seq)
) {{partitioned_by_ts}};

-- One row per battery pack (2016: per voltage page) per frame. The arrays are what the frame
-- carried, in order, starting at cell first_cell; sentinel elements are NULL.
CREATE TABLE IF NOT EXISTS battery_pack_telemetry (
    vin                     text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    pack                    smallint    NOT NULL,
    voltage_v               real,
    current_a               real,
    cell_count              integer,
    first_cell              integer     NOT NULL,
    cell_voltages_mv        smallint[],
    probe_temps_c           smallint[],
    cell_min_mv             integer,
    cell_max_mv             integer,
    probe_min_c             smallint,
    probe_max_c             smallint,
    PRIMARY KEY (vin, ts, pack, first_cell)
) {{partitioned_by_ts}};

-- One row per frame whose alarm level or flags are non-zero.
CREATE TABLE IF NOT EXISTS alarm_events (
    vin                     text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    max_level               smallint,
    general_flags           bigint,
    ress_faults             bigint[],               -- fault codes are u32
    motor_faults            bigint[],
    engine_faults           bigint[],
    other_faults            bigint[],
    bit_levels              smallint[],             -- 2025: [bit, level, bit, level, ...]
    PRIMARY KEY (vin, ts)
) {{partitioned_by_ts}};

-- Vehicle login (0x01) / logout (0x04).
CREATE TABLE IF NOT EXISTS vehicle_sessions (
    vin                     text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    event                   text        NOT NULL,   -- login | logout
    seq                     integer,
    iccid                   text,
    pack_codes              text[],
    PRIMARY KEY (vin, ts, event)
) {{partitioned_by_ts}};

-- Optional archive of the frames themselves (storage.raw_frames = true), with a retention of
-- its own: any stored row can be traced to its frame by (vin, ts).
CREATE TABLE IF NOT EXISTS raw_frames (
    vin                     text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    command                 smallint    NOT NULL,
    edition                 smallint    NOT NULL,
    entity_kind             text        NOT NULL,
    topic                   text        NOT NULL,
    kafka_partition         integer     NOT NULL,
    kafka_offset            bigint      NOT NULL,
    frame                   bytea       NOT NULL,
    PRIMARY KEY (vin, ts, command)
) {{partitioned_by_ts}};
