-- 0007_packs: what standalone battery packs report on nev.battery.raw (swap stations,
-- storage, second-life, recycling: docs/protocols/battery.md), one column list for both
-- flavours. Columns follow contract/battery.py (a NamedTuple's field order is its table's
-- column order; the two *_raw byte strings arrive as their int2[] columns). Rows are keyed by
-- the full 24-character GB/T 34014 pack code and the frame time.
--
-- Where a pack is over time (bindings, swaps) is derived from these rows and from the vehicle
-- logins' pack codes (vehicle_sessions.pack_codes) by frame time, never kept as mutable
-- state, so late or reissued frames cannot corrupt it (the views of 0009_pack_views).

-- One row per real-time (0x02) / reissue (0x03) pack frame.
CREATE TABLE IF NOT EXISTS pack_telemetry (
    pack_code               text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    received_at             timestamptz,
    edition                 smallint    NOT NULL,
    command                 smallint    NOT NULL,
    lifecycle_stage         smallint,               -- 1 in vehicle, 2 swap station, 3 storage,
                                                    -- 4 second life, 5 recycled
    work_state              smallint,               -- 1 charging, 2 discharging, 3 idle
    soc_pct                 smallint,
    soh_pct                 smallint,
    cycle_count             integer,
    voltage_v               real,
    current_a               real,                   -- positive: discharge
    insulation_kohm         integer,
    site_id                 text COLLATE "C",       -- station / warehouse / site id, or the VIN
    slot                    integer,
    cell_count              integer,
    cell_voltages_mv        smallint[],
    cell_min_mv             integer,
    cell_max_mv             integer,
    probe_count             integer,
    probe_temps_c           smallint[],
    probe_min_c             smallint,
    probe_max_c             smallint,
    max_alarm_level         smallint,
    alarm_flags             bigint,                 -- u32 bit mask
    fault_count             integer     NOT NULL,
    PRIMARY KEY (pack_code, ts)
) {{partitioned_by_ts}};

-- One row per pack frame whose alarm level or flags are non-zero.
CREATE TABLE IF NOT EXISTS pack_alarm_events (
    pack_code               text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    max_level               smallint,
    alarm_flags             bigint,
    fault_codes             bigint[],
    PRIMARY KEY (pack_code, ts)
) {{partitioned_by_ts}};

-- Pack login (0x01) / logout (0x04).
CREATE TABLE IF NOT EXISTS pack_sessions (
    pack_code               text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    event                   text        NOT NULL,   -- login | logout
    seq                     integer,
    iccid                   text,
    original_code           text COLLATE "C",       -- a second-life pack's code before re-coding
    rated_capacity_ah       real,
    rated_energy_kwh        real,
    nominal_voltage_v       real,
    cell_count              integer,
    probe_count             integer,
    PRIMARY KEY (pack_code, ts, event)
) {{partitioned_by_ts}};

-- "which packs were at this site": the place column of the bindings.
CREATE INDEX IF NOT EXISTS pack_telemetry_site ON pack_telemetry (site_id, ts);
-- A pack's history follows it through the vehicles it was in: find the logins naming it.
CREATE INDEX IF NOT EXISTS vehicle_sessions_pack_codes
    ON vehicle_sessions USING gin (pack_codes) WHERE event = 'login';
