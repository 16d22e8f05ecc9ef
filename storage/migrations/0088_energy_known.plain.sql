-- 0088_energy_known (plain PostgreSQL): energy_out_kwh / energy_in_kwh count only the frames
-- whose total voltage and current are both known, and are NULL where none of the bucket is.
--
-- 0003 summed V * greatest(I, 0) over the bucket's frames and scaled by count(*): greatest
-- ignores a NULL, so a frame whose current is unknown (the 0xFFFF "invalid" / 0xFFFE
-- "abnormal" sentinels are stored as NULL) counted as 0 kW, and a frame with an unknown
-- voltage dropped out of the sum but not out of the count. A vehicle whose every current was
-- unknown showed 0 kWh, one with half of them unknown about half its energy. Now a bucket's
-- energy is the mean power of its known frames times its frames' sampling intervals
-- (frames x span / (frames - 1), as before): an unknown frame is taken to draw what the known
-- ones drew on average, and no known frame means unknown energy (NULL), not 0.
--
-- The summary function 0071 wraps (refresh_vehicle_stats_unclamped) is replaced with the new
-- select list (0088_energy_known.vehicle_stats.part.sql); 0071's clamp stays in front of it.
-- Then every bucket whose raw rows are still kept is recomputed once, through the clamped
-- refresh_vehicle_stats: from the first whole hour of the oldest vehicle_telemetry partition to
-- the current hour. Older buckets (retention dropped their raw rows; vehicle_stats_1h is kept
-- forever by default) cannot be recomputed and keep their 0003 figures (docs/operations.md).

CREATE OR REPLACE FUNCTION refresh_vehicle_stats_unclamped(p_from timestamptz, p_to timestamptz)
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

-- The buckets materialised with 0003's energy, where the raw rows are still there to say better.
SELECT refresh_vehicle_stats('-infinity', now());
