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
-- select list (0088_energy_known.vehicle_stats.part.sql), one grain at a time
-- (refresh_vehicle_stats_grain); 0071's clamp stays in front of it.
--
-- The buckets already materialised the 0003 way are NOT recomputed here: on a real database
-- that one statement (years of raw rows) exceeds postgres.statement_timeout_ms, so the
-- migration would fail for ever (or, the timeout lifted, hold migrate's lock for hours).
-- Instead vehicle_stats_recompute records the cut-over (the hour after this migration's) and
-- how far back the buckets are recomputed; each upkeep pass (storage.maintenance) recomputes
-- one more step backwards from it (recompute_vehicle_stats_step: its own transaction, under a
-- statement timeout; the step, a day at most, is halved when it does not finish in time and
-- grown again after quick ones), each grain only within its retention, until the oldest raw
-- hour; then the row is deleted. Until then the days not yet reached show their 0003 figures,
-- and the buckets whose raw rows retention already dropped keep them for good
-- (docs/operations.md).

-- One grain's buckets of [from, to) (whole hours), deleted and inserted again from the raw rows.
CREATE FUNCTION refresh_vehicle_stats_grain(p_from timestamptz, p_to timestamptz, p_grain text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    lo  timestamptz := date_trunc('hour', p_from, 'UTC');
    hi  timestamptz := date_trunc('hour', p_to, 'UTC');
    tbl text := CASE p_grain WHEN 'minute' THEN 'vehicle_stats_1m'
                             WHEN 'hour' THEN 'vehicle_stats_1h' END;
    n   bigint;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'refresh_vehicle_stats_grain: grain % is neither minute nor hour', p_grain;
    END IF;
    IF hi < p_to THEN
        hi := hi + INTERVAL '1 hour';
    END IF;
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
        tbl, p_grain) USING lo, hi;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION refresh_vehicle_stats_unclamped(p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    RETURN refresh_vehicle_stats_grain(p_from, p_to, 'minute')
         + refresh_vehicle_stats_grain(p_from, p_to, 'hour');
END
$$;

-- The recompute of the buckets made the 0003 way, one step per upkeep pass: at most one row,
-- deleted once the oldest raw hour is reached. Buckets from done_from to cutover are recomputed
-- (cutover on: the upkeep's own trailing refresh computes them with the new select list).
-- step: the span of the next step (storage.maintenance halves it, down to an hour, when one
-- does not finish within its statement timeout, and doubles it, up to a day, after quick ones).
CREATE TABLE vehicle_stats_recompute (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    cutover   timestamptz NOT NULL,
    done_from timestamptz NOT NULL,
    step      interval NOT NULL DEFAULT INTERVAL '1 day'
              CHECK (step >= INTERVAL '1 hour' AND step <= INTERVAL '1 day')
);
-- (none on a database without telemetry, e.g. a fresh install: nothing was made the 0003 way)
INSERT INTO vehicle_stats_recompute (cutover, done_from)
SELECT t, t FROM (SELECT date_trunc('hour', now(), 'UTC') + INTERVAL '1 hour' AS t) c
WHERE EXISTS (SELECT 1 FROM vehicle_telemetry);

-- The first whole hour of the oldest vehicle_telemetry partition (as 0071's clamp reads it),
-- NULL without any partition. DateStyle/TimeZone: the bound is read back from pg_get_expr's text.
CREATE FUNCTION vehicle_telemetry_first_hour()
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
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
    IF date_trunc('hour', oldest) < oldest THEN
        oldest := date_trunc('hour', oldest) + INTERVAL '1 hour';
    END IF;
    RETURN oldest;
END
$$;

-- The first whole hour at or after p_at (NULL stays NULL).
CREATE FUNCTION vehicle_stats_ceil_hour(p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT date_trunc('hour', p_at, 'UTC')
         + CASE WHEN date_trunc('hour', p_at, 'UTC') < p_at THEN INTERVAL '1 hour'
                ELSE INTERVAL '0' END
$$;

-- Where the recompute ends: the oldest raw hour, or later where both grains' retention
-- horizons (p_minutes_from, p_hours_from; NULL: no retention) are past it (nothing older is
-- kept in either table). NULL without any raw partition.
CREATE FUNCTION recompute_vehicle_stats_floor(p_minutes_from timestamptz,
                                              p_hours_from timestamptz)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path FROM CURRENT
AS $$
    SELECT greatest(vehicle_telemetry_first_hour(),
                    least(vehicle_stats_ceil_hour(p_minutes_from),
                          vehicle_stats_ceil_hour(p_hours_from)))
    WHERE p_minutes_from IS NOT NULL AND p_hours_from IS NOT NULL
    UNION ALL
    SELECT vehicle_telemetry_first_hour()
    WHERE p_minutes_from IS NULL OR p_hours_from IS NULL
$$;

-- One step backwards: the buckets of [done_from - step, done_from) (step: the table's), not
-- before recompute_vehicle_stats_floor; each grain only from its retention horizon on
-- (p_minutes_from: vehicle_stats_1m's, p_hours_from: vehicle_stats_1h's; NULL: no retention).
-- Returns the range done, the rows made and where the recompute ends (rest_from), or no row
-- once all is done. The caller bounds it with a statement timeout (storage.maintenance).
CREATE FUNCTION recompute_vehicle_stats_step(p_minutes_from timestamptz,
                                             p_hours_from timestamptz)
RETURNS TABLE (range_from timestamptz, range_to timestamptz, buckets bigint, finished boolean,
               rest_from timestamptz)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    hi     timestamptz;
    lo     timestamptz;
    p_step interval;
    oldest timestamptz := recompute_vehicle_stats_floor(p_minutes_from, p_hours_from);
    gfrom  timestamptz;
    n      bigint := 0;
BEGIN
    SELECT r.done_from, r.step INTO hi, p_step FROM vehicle_stats_recompute r FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF oldest IS NULL OR hi <= oldest THEN
        DELETE FROM vehicle_stats_recompute;
        RETURN QUERY SELECT hi, hi, 0::bigint, true, hi;
        RETURN;
    END IF;
    lo := greatest(hi - p_step, oldest);
    -- whole hours past each grain's retention horizon (retention deletes older ones again)
    gfrom := greatest(lo, coalesce(vehicle_stats_ceil_hour(p_hours_from), lo));
    IF gfrom < hi THEN
        n := refresh_vehicle_stats_grain(gfrom, hi, 'hour');
    END IF;
    gfrom := greatest(lo, coalesce(vehicle_stats_ceil_hour(p_minutes_from), lo));
    IF gfrom < hi THEN
        n := n + refresh_vehicle_stats_grain(gfrom, hi, 'minute');
    END IF;
    IF lo <= oldest THEN
        DELETE FROM vehicle_stats_recompute;
    ELSE
        UPDATE vehicle_stats_recompute SET done_from = lo;
    END IF;
    RETURN QUERY SELECT lo, hi, n, lo <= oldest, oldest;
END
$$;
