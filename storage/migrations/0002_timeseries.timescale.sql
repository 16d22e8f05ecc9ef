-- 0002_timeseries (TimescaleDB): the shared tables of 0002_timeseries.sql as hypertables on the
-- frame time.
--
-- Chunk intervals, compression and retention policies are NOT set here: storage.policies sets
-- them from configuration at every `nev-ingest migrate` (they change with the fleet; the
-- structure does not). The intervals below are placeholders until then.
--
-- Compression segments by VIN (a vehicle's rows compress together and a per-VIN query
-- decompresses one segment) and orders by time; TimescaleDB requires every unique-key column
-- in segmentby or orderby.

-- "alarms of level >= N between A and B": level first, then time.
CREATE INDEX IF NOT EXISTS alarm_events_level_ts ON alarm_events (max_level, ts DESC);

SELECT create_hypertable('vehicle_telemetry', by_range('ts', INTERVAL '1 hour'), if_not_exists => true);
SELECT create_hypertable('drive_motor_telemetry', by_range('ts', INTERVAL '1 hour'), if_not_exists => true);
SELECT create_hypertable('battery_pack_telemetry', by_range('ts', INTERVAL '1 hour'), if_not_exists => true);
SELECT create_hypertable('alarm_events', by_range('ts', INTERVAL '1 day'), if_not_exists => true);
SELECT create_hypertable('vehicle_sessions', by_range('ts', INTERVAL '7 days'), if_not_exists => true);
SELECT create_hypertable('raw_frames', by_range('ts', INTERVAL '1 hour'), if_not_exists => true);

ALTER TABLE vehicle_telemetry SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'vin', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE drive_motor_telemetry SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'vin', timescaledb.compress_orderby = 'ts DESC, seq');
ALTER TABLE battery_pack_telemetry SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'vin',
    timescaledb.compress_orderby = 'ts DESC, pack, first_cell');
ALTER TABLE alarm_events SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'vin', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE vehicle_sessions SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'vin', timescaledb.compress_orderby = 'ts DESC, event');
ALTER TABLE raw_frames SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'vin', timescaledb.compress_orderby = 'ts DESC, command');
