-- 0003_aggregates (plain PostgreSQL): summary tables in place of continuous aggregates.
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
-- Same names and columns as the TimescaleDB continuous aggregates, so queries do not care which
-- flavour they run on: both compute the columns of 0003_aggregates.vehicle_stats.part.sql. storage.maintenance calls refresh_vehicle_stats(from, to) periodically
-- over a trailing window; it recomputes whole hours (delete + insert in one transaction), so a
-- refresh is idempotent and readers see the old or the new buckets, never half of them.

CREATE TABLE IF NOT EXISTS vehicle_stats_1m (
    {{vehicle_stats_columns}}
);
CREATE INDEX IF NOT EXISTS vehicle_stats_1m_bucket ON vehicle_stats_1m (bucket);

CREATE TABLE IF NOT EXISTS vehicle_stats_1h (
    {{vehicle_stats_columns}}
);
CREATE INDEX IF NOT EXISTS vehicle_stats_1h_bucket ON vehicle_stats_1h (bucket);

CREATE OR REPLACE FUNCTION refresh_vehicle_stats(p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    lo    timestamptz := date_trunc('hour', p_from, 'UTC');
    hi    timestamptz := date_trunc('hour', p_to, 'UTC');
    n     bigint;
    total bigint := 0;
    grain text;
    tbl   text;
BEGIN
    IF hi < p_to THEN
        hi := hi + INTERVAL '1 hour';
    END IF;
    -- One query for both grains (the minute and the hour table have the same columns).
    FOREACH grain IN ARRAY ARRAY['minute', 'hour'] LOOP
        tbl := CASE grain WHEN 'minute' THEN 'vehicle_stats_1m' ELSE 'vehicle_stats_1h' END;
        EXECUTE format('DELETE FROM %I WHERE bucket >= $1 AND bucket < $2', tbl) USING lo, hi;
        EXECUTE format($q$
        INSERT INTO %I
        SELECT
            vin,
            date_trunc(%L, ts, 'UTC') AS bucket,
            {{vehicle_stats}}
        FROM vehicle_telemetry
        WHERE ts >= $1 AND ts < $2
        GROUP BY 1, 2$q$,
            tbl, grain) USING lo, hi;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;
