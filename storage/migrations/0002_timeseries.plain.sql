-- 0002_timeseries (plain PostgreSQL): after the shared tables of 0002_timeseries.sql, which
-- are range-partitioned by frame time here.
--
-- Partitions are created ahead (and dropped after retention) by storage.maintenance, which the
-- service runs periodically; there is deliberately no DEFAULT partition: a frame whose time
-- has no partition (a device clock years off) is rejected to the dead-letter topic instead of
-- landing in a catch-all that would block creating the real partitions later.

-- Time-range scans over all vehicles (summary refresh, fleet queries): BRIN costs almost
-- nothing to maintain on append-mostly data.
CREATE INDEX IF NOT EXISTS vehicle_telemetry_ts_brin ON vehicle_telemetry USING brin (ts);

-- "alarms of level >= N between A and B": level first, then time.
CREATE INDEX IF NOT EXISTS alarm_events_level_ts ON alarm_events (max_level, ts);
