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
-- Real-time aggregation is on (materialized_only = false): buckets not yet materialised are
-- computed from the raw rows at query time. Refresh and retention policies: storage.policies.

CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_stats_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    vin,
    time_bucket(INTERVAL '1 minute', ts) AS bucket,
    count(*)                                        AS frames,
    min(ts)                                         AS first_ts,
    max(ts)                                         AS last_ts,
    min(odometer_km)                                AS odometer_min_km,
    max(odometer_km)                                AS odometer_max_km,
    max(odometer_km) - min(odometer_km)             AS distance_km,
    sum(total_voltage_v::float8 * greatest(total_current_a, 0))
        * EXTRACT(epoch FROM max(ts) - min(ts))::float8
        / nullif(count(*) - 1, 0) / 3.6e6           AS energy_out_kwh,
    sum(total_voltage_v::float8 * greatest(-total_current_a, 0))
        * EXTRACT(epoch FROM max(ts) - min(ts))::float8
        / nullif(count(*) - 1, 0) / 3.6e6           AS energy_in_kwh,
    min(soc_pct)                                    AS soc_min_pct,
    max(soc_pct)                                    AS soc_max_pct,
    max(max_temp_c)                                 AS max_temp_c,
    max(max_cell_voltage_v)                         AS max_cell_voltage_v,
    min(min_cell_voltage_v)                         AS min_cell_voltage_v,
    max(max_alarm_level)                            AS max_alarm_level,
    count(*) FILTER (WHERE max_alarm_level > 0)     AS alarm_frames,
    count(*) FILTER (WHERE max_alarm_level >= 3)    AS severe_alarm_frames
FROM vehicle_telemetry
GROUP BY vin, bucket
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_stats_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    vin,
    time_bucket(INTERVAL '1 hour', ts) AS bucket,
    count(*)                                        AS frames,
    min(ts)                                         AS first_ts,
    max(ts)                                         AS last_ts,
    min(odometer_km)                                AS odometer_min_km,
    max(odometer_km)                                AS odometer_max_km,
    max(odometer_km) - min(odometer_km)             AS distance_km,
    sum(total_voltage_v::float8 * greatest(total_current_a, 0))
        * EXTRACT(epoch FROM max(ts) - min(ts))::float8
        / nullif(count(*) - 1, 0) / 3.6e6           AS energy_out_kwh,
    sum(total_voltage_v::float8 * greatest(-total_current_a, 0))
        * EXTRACT(epoch FROM max(ts) - min(ts))::float8
        / nullif(count(*) - 1, 0) / 3.6e6           AS energy_in_kwh,
    min(soc_pct)                                    AS soc_min_pct,
    max(soc_pct)                                    AS soc_max_pct,
    max(max_temp_c)                                 AS max_temp_c,
    max(max_cell_voltage_v)                         AS max_cell_voltage_v,
    min(min_cell_voltage_v)                         AS min_cell_voltage_v,
    max(max_alarm_level)                            AS max_alarm_level,
    count(*) FILTER (WHERE max_alarm_level > 0)     AS alarm_frames,
    count(*) FILTER (WHERE max_alarm_level >= 3)    AS severe_alarm_frames
FROM vehicle_telemetry
GROUP BY vin, bucket
WITH NO DATA;
