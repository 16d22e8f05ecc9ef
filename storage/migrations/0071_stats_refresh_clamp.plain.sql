-- 0071_stats_refresh_clamp (plain PostgreSQL): refresh_vehicle_stats(from, to) recomputes only
-- what vehicle_telemetry still holds.
--
-- 0003's function deletes the summary buckets of [from, to) and inserts them again from
-- vehicle_telemetry. Retention drops raw partitions long before the summaries (vehicle_stats_1h
-- is kept forever by default), so a wide catch-up call deleted the summaries of days whose raw
-- rows were gone and inserted nothing back. Now `from` is clamped to the first whole hour of the
-- oldest vehicle_telemetry partition (partitions are dropped whole and oldest first, so nothing
-- older is left); without any partition nothing is recomputed. 0003's function, renamed, still
-- does the work.
ALTER FUNCTION refresh_vehicle_stats(timestamptz, timestamptz)
    RENAME TO refresh_vehicle_stats_unclamped;
COMMENT ON FUNCTION refresh_vehicle_stats_unclamped(timestamptz, timestamptz) IS
    'Deletes and recomputes the summary buckets of [from, to) whatever raw rows are left: '
    'call refresh_vehicle_stats, which keeps the summaries older than the raw data.';

-- DateStyle/TimeZone: a bound is read back from pg_get_expr's text (ISO in UTC is exact,
-- whatever the caller's session prints).
CREATE OR REPLACE FUNCTION refresh_vehicle_stats(p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET DateStyle = 'ISO, YMD'
SET TimeZone = 'UTC'
AS $$
DECLARE
    oldest timestamptz;
BEGIN
    SELECT min((regexp_match(pg_get_expr(c.relpartbound, c.oid),
                             'FROM \(''([^'']+)''\)'))[1]::timestamptz)
    INTO oldest
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'vehicle_telemetry'::regclass;
    IF oldest IS NULL THEN
        RETURN 0;  -- no raw partition: nothing to recompute from, the summaries stay
    END IF;
    -- whole buckets only: the first hour that starts inside the oldest partition
    IF date_trunc('hour', oldest) < oldest THEN
        oldest := date_trunc('hour', oldest) + INTERVAL '1 hour';
    END IF;
    IF p_to <= oldest THEN
        RETURN 0;
    END IF;
    RETURN refresh_vehicle_stats_unclamped(greatest(p_from, oldest), p_to);
END
$$;
