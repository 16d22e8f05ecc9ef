-- 0003_aggregates (TimescaleDB): continuous aggregates over vehicle_telemetry.
--
-- Per vehicle per minute and per hour, what regulators ask most: distance, energy, SOC range,
-- max cell temperature, alarm counts (docs/storage.md describes every column):
--   distance_km     max - min odometer inside the bucket. Summing buckets under-counts the
--                   stretch between one bucket's last frame and the next one's first: for a
--                   day or a trip take max(odometer_max_km) - min(odometer_min_km) instead.
--   energy_*_kwh    sum of V*I over the bucket's frames times their mean spacing
--                   (span / (frames - 1)): each frame stands for one sampling interval.
--                   out = discharge (current > 0), in = charging/regeneration. NULL for a
--                   bucket of a single frame (no spacing to go by).
--   alarm_frames    frames with max_alarm_level > 0; severe_alarm_frames: level >= 3.
-- Buckets are aligned to UTC (whole minutes/hours, so also to +08:00 local time).
--
-- The columns are 0003_aggregates.vehicle_stats.part.sql, as the plain summary tables'.
-- Real-time aggregation is on (materialized_only = false): buckets not yet materialised are
-- computed from the raw rows at query time. Refresh and retention policies: storage.policies.

CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_stats_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    vin,
    time_bucket(INTERVAL '1 minute', ts) AS bucket,
    {{vehicle_stats}}
FROM vehicle_telemetry
GROUP BY vin, bucket
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_stats_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    vin,
    time_bucket(INTERVAL '1 hour', ts) AS bucket,
    {{vehicle_stats}}
FROM vehicle_telemetry
GROUP BY vin, bucket
WITH NO DATA;
