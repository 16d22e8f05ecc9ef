-- 0007_packs (TimescaleDB): the shared tables of 0007_packs.sql as hypertables on the frame
-- time; intervals and policies set by storage.policies at every migrate (as for 0002).
-- Compression segments by pack code: one pack's history compresses together.

SELECT create_hypertable('pack_telemetry', by_range('ts', INTERVAL '1 hour'), if_not_exists => true);
SELECT create_hypertable('pack_alarm_events', by_range('ts', INTERVAL '1 day'), if_not_exists => true);
SELECT create_hypertable('pack_sessions', by_range('ts', INTERVAL '7 days'), if_not_exists => true);

ALTER TABLE pack_telemetry SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'pack_code', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE pack_alarm_events SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'pack_code', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE pack_sessions SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'pack_code', timescaledb.compress_orderby = 'ts DESC, event');
