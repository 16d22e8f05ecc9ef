-- 0006_chargers (plain PostgreSQL): the shared tables of 0006_chargers.sql, range-partitioned
-- by frame time; partitions are created ahead and on demand by storage.maintenance /
-- storage.partitions like those of 0002 (storage.params.TIMESERIES_TABLES lists them).

CREATE INDEX IF NOT EXISTS charger_telemetry_ts_brin ON charger_telemetry USING brin (ts);
CREATE INDEX IF NOT EXISTS connector_status_events_status_ts
    ON connector_status_events (status, ts);
