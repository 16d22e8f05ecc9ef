-- 0006_chargers: what chargers report (the binary profile on nev.charger.raw and the
-- operators' T/CEC 102 pushes on nev.charger.tcec), one column list for both flavours.
--
-- Columns follow contract/charger.py: a NamedTuple's field order is its table's column order,
-- so rows go to binary COPY as they are. Every row is keyed by (operator_id, connector_id):
-- the T/CEC 102 OperatorID (9 characters) and ConnectorID, the key regulators already hold,
-- whichever path the data came by; `source` ('frame' | 'tcec') says which path, and is part
-- of each key so the same report arriving both ways is two rows, not a conflict.
-- latest_state.entity_id of a connector is operator_id || ':' || connector_id (unambiguous:
-- the OperatorID has a fixed length of 9).

-- A connector's registration (charger login 0x01, T/CEC notification_stationInfo). Few rows
-- (one per login): a plain table on both flavours, kept whole (no time partitioning).
CREATE TABLE IF NOT EXISTS charger_connectors (
    operator_id             text COLLATE "C" NOT NULL,
    connector_id            text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,   -- login frame time / push time
    station_id              text,
    equipment_id            text        NOT NULL,   -- the pile
    charger_id              text,                   -- the profile's 17-character header code
    connector_type          smallint    NOT NULL,   -- T/CEC ConnectorType 1..6
    voltage_upper_v         integer,
    voltage_lower_v         integer,
    current_a               integer,
    power_kw                real,
    national_standard       smallint,               -- 1 GB/T 2011, 2 GB/T 2015
    source                  text        NOT NULL,
    PRIMARY KEY (operator_id, connector_id, ts, source)
);

-- One row per reported connector status (0 offline, 1 idle, 2 occupied, 3 charging,
-- 4 reserved, 255 fault).
CREATE TABLE IF NOT EXISTS connector_status_events (
    operator_id             text COLLATE "C" NOT NULL,
    connector_id            text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    status                  smallint    NOT NULL,
    park_status             smallint,
    lock_status             smallint,
    source                  text        NOT NULL,
    PRIMARY KEY (operator_id, connector_id, ts, source)
) {{partitioned_by_ts}};

-- A connector's output and the connected vehicle's state, per frame / push.
CREATE TABLE IF NOT EXISTS charger_telemetry (
    operator_id             text COLLATE "C" NOT NULL,
    connector_id            text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    received_at             timestamptz,
    charger_id              text,
    voltage_v               real,
    current_a               real,
    power_kw                real,
    energy_kwh              double precision,       -- this session's energy so far
    connector_temp_c        smallint,
    vin                     text COLLATE "C",       -- the connected vehicle, when reported
    soc_pct                 real,
    bms_voltage_demand_v    real,
    bms_current_demand_a    real,
    source                  text        NOT NULL,
    PRIMARY KEY (operator_id, connector_id, ts, source)
) {{partitioned_by_ts}};

-- Progress of a charging order ('progress') and the completed order ('order'); sessions are
-- built from these by start_charge_seq (StartChargeSeq = OperatorID + 18, unique per order).
CREATE TABLE IF NOT EXISTS charging_session_events (
    operator_id             text COLLATE "C" NOT NULL,
    connector_id            text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    start_charge_seq        text COLLATE "C" NOT NULL,
    event                   text        NOT NULL,   -- progress | order
    state                   smallint,               -- StartChargeSeqStat 1..5
    start_time              timestamptz NOT NULL,
    end_time                timestamptz,
    energy_kwh              double precision,
    elec_money              double precision,       -- yuan
    service_money           double precision,
    total_money             double precision,
    stop_reason             smallint,
    vin                     text COLLATE "C",
    source                  text        NOT NULL,
    PRIMARY KEY (start_charge_seq, ts, event, source)
) {{partitioned_by_ts}};

-- Fault codes a charger reports (profile block 0x05); connector_id '' = a fault of the pile.
CREATE TABLE IF NOT EXISTS charger_faults (
    operator_id             text COLLATE "C" NOT NULL,
    connector_id            text COLLATE "C" NOT NULL,
    ts                      timestamptz NOT NULL,
    charger_id              text,
    fault_codes             bigint[]    NOT NULL,
    source                  text        NOT NULL,
    PRIMARY KEY (operator_id, connector_id, ts, source)
) {{partitioned_by_ts}};

CREATE INDEX IF NOT EXISTS charger_connectors_equipment
    ON charger_connectors (operator_id, equipment_id);
-- "sessions of this vehicle": the few order rows of a VIN.
CREATE INDEX IF NOT EXISTS charging_session_events_vin
    ON charging_session_events (vin, ts) WHERE vin IS NOT NULL;
CREATE INDEX IF NOT EXISTS charging_session_events_connector
    ON charging_session_events (operator_id, connector_id, ts);
