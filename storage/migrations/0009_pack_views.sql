-- 0009_pack_views: where each pack has been and each charging session, DERIVED by frame time
-- from the rows of 0002/0006/0007 (never kept as mutable state, so a late or reissued frame
-- only adds a row and the answer is recomputed right). The same on both flavours.
--
-- These views are the SQL answer for everyone; a filter on pack_code (bindings, swaps) or on
-- (operator_id, connector_id) (sessions) reaches the tables because every window below is
-- partitioned by those columns. One thing no view can do: reach the GIN index on
-- vehicle_sessions.pack_codes, because a filter on an unnested array element never becomes
-- `pack_codes @> ARRAY[...]`. `nev-ingest query pack` therefore runs the same run-finding
-- (storage/queries_packs.py) on the places of one pack found through that index; fleet-wide
-- questions must be bounded by a time range (docs/storage.md, "Packs and chargers").

-- Lifecycle stage of a pack report (docs/protocols/battery.md) -> the kind of place.
CREATE OR REPLACE FUNCTION pack_place_kind(stage smallint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE stage
    WHEN 1 THEN 'vehicle'
    WHEN 2 THEN 'swap_station'
    WHEN 3 THEN 'storage'
    WHEN 4 THEN 'second_life'
    WHEN 5 THEN 'recycler'
    ELSE 'unknown'
END;

-- Every report of where a pack was: vehicle logins (pack_codes[i] is the pack in position i,
-- the place is the VIN), standalone pack frames (place from lifecycle stage + site id; a
-- frame without the pack-state block says nothing about its place: 'unknown'), and
-- departures: 'unbound' (place_id = the VIN it left) at a vehicle's login that no longer names
-- a pack its previous login named - the stay ends there, not when the pack is next reported
-- somewhere else, which can be hours later. A login naming no pack at all (n = 0: terminals
-- that do not report their RESS codes) says nothing and is skipped, also as "previous login".
CREATE OR REPLACE VIEW pack_places AS
SELECT p.pack_code, s.ts, 'vehicle'::text AS place_kind, s.vin::text AS place_id,
       p.position::smallint AS position, 'vehicle_login'::text AS source
FROM vehicle_sessions s
CROSS JOIN LATERAL unnest(s.pack_codes) WITH ORDINALITY AS p(pack_code, position)
WHERE s.event = 'login'
UNION ALL
SELECT t.pack_code, t.ts, pack_place_kind(t.lifecycle_stage), t.site_id::text,
       NULL::smallint, 'pack_report'
FROM pack_telemetry t
UNION ALL
SELECT gone.pack_code, l.ts, 'unbound', l.vin::text, NULL::smallint, 'vehicle_login'
FROM (
    SELECT vin, ts, pack_codes,
           lag(pack_codes) OVER (PARTITION BY vin ORDER BY ts) AS before
    FROM vehicle_sessions
    WHERE event = 'login' AND cardinality(pack_codes) > 0
) l
CROSS JOIN LATERAL unnest(l.before) AS gone(pack_code)
WHERE NOT (gone.pack_code = ANY (l.pack_codes));

-- Runs of the same place per pack in frame-time order (gaps and islands): a run starts where
-- the place (kind, id) differs from the previous report's; it lasts until the next run starts
-- (valid_to NULL: still there). Reports at the same instant are ordered by source, kind and id
-- so the answer does not depend on arrival order. 'unknown' reports are left out (they would
-- split a stay in two); an 'unbound' report counts only right after that vehicle's own report
-- (a pack already reported elsewhere before the vehicle's next login has left: the departure
-- says nothing new) and shows the gap as a binding of kind 'unbound'. position is the pack's
-- position in the vehicle (lowest reported).
CREATE OR REPLACE VIEW pack_bindings AS
SELECT pack_code, place_kind, place_id, position, valid_from,
       lead(valid_from) OVER (PARTITION BY pack_code ORDER BY valid_from) AS valid_to,
       reports
FROM (
    SELECT pack_code, min(place_kind) AS place_kind, min(place_id) AS place_id,
           min(position) AS position, min(ts) AS valid_from, count(*) AS reports
    FROM (
        SELECT pack_code, ts, place_kind, place_id, position,
               count(*) FILTER (WHERE moved) OVER (
                   PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id
                   ROWS UNBOUNDED PRECEDING) AS run
        FROM (
            SELECT pack_code, ts, place_kind, place_id, position, source,
                   (place_kind, place_id) IS DISTINCT FROM
                       (lag(place_kind) OVER w, lag(place_id) OVER w) AS moved
            FROM (
                SELECT pack_code, ts, place_kind, place_id, position, source,
                       lag(place_kind) OVER w AS before_kind, lag(place_id) OVER w AS before_id
                FROM pack_places
                WHERE place_kind <> 'unknown'
                WINDOW w AS (PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id)
            ) known
            WHERE place_kind <> 'unbound' OR (before_kind = 'vehicle' AND before_id = place_id)
            WINDOW w AS (PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id)
        ) reports
    ) numbered
    GROUP BY pack_code, run
) runs;

-- A swap is a change of place: every binding after a pack's first, with the place it left;
-- 'unbound' gaps are left out (a swap is leaving one place and appearing at another, at the
-- time it appears there), so a swap is never a return to the place it left.
CREATE OR REPLACE VIEW pack_swaps AS
SELECT pack_code, ts, from_kind, from_id, to_kind, to_id
FROM (
    SELECT pack_code, valid_from AS ts,
           lag(place_kind) OVER w AS from_kind, lag(place_id) OVER w AS from_id,
           place_kind AS to_kind, place_id AS to_id,
           lag(valid_from) OVER w IS NOT NULL AS after_first
    FROM pack_bindings
    WHERE place_kind <> 'unbound'
    WINDOW w AS (PARTITION BY pack_code ORDER BY valid_from)
) changes
WHERE after_first AND (from_kind, from_id) IS DISTINCT FROM (to_kind, to_id);

-- Vehicle pack telemetry under the pack code in that position of the vehicle's latest login at
-- or before the row's frame time, so one pack's history follows it across vehicles. A filter on
-- vin reaches battery_pack_telemetry; a filter on pack_code alone reads every row (use
-- `nev-ingest query pack`, which starts from the logins naming the pack).
CREATE OR REPLACE VIEW vehicle_pack_history AS
SELECT l.pack_code, t.vin, t.ts, t.pack AS position, t.voltage_v, t.current_a, t.cell_count,
       t.first_cell, t.cell_voltages_mv, t.probe_temps_c, t.cell_min_mv, t.cell_max_mv,
       t.probe_min_c, t.probe_max_c
FROM battery_pack_telemetry t
CROSS JOIN LATERAL (
    SELECT s.pack_codes[t.pack] AS pack_code
    FROM vehicle_sessions s
    WHERE s.vin = t.vin AND s.event = 'login' AND s.ts <= t.ts
    ORDER BY s.ts DESC
    LIMIT 1
) l
WHERE l.pack_code IS NOT NULL;

-- Charging sessions. From orders (source 'order'/'progress'): the events of one
-- start_charge_seq, the completed order's values winning over progress, else the newest
-- progress; peak power and (where the events carry none) the VIN from the connector's
-- charger_telemetry inside the session. From connector status alone (source 'status', for
-- chargers that send no orders): each run of status 3 (charging) on a connector, ended by the
-- next other status, that no order or progress of the same connector overlaps; its energy is
-- the highest session energy its telemetry reported. state: 1..5 as StartChargeSeqStat.
CREATE OR REPLACE VIEW charging_sessions AS
SELECT o.operator_id, o.connector_id, o.start_charge_seq, coalesce(o.vin, tel.vin) AS vin,
       o.start_time, o.end_time, o.state, o.energy_kwh, tel.peak_power_kw, o.total_money,
       o.stop_reason, o.source
FROM (
    SELECT operator_id, connector_id, start_charge_seq,
           coalesce(min(start_time) FILTER (WHERE event = 'order'), min(start_time))
               AS start_time,
           CASE WHEN bool_or(event = 'order') THEN min(end_time) FILTER (WHERE event = 'order')
                WHEN (array_agg(state ORDER BY ts DESC) FILTER (WHERE state IS NOT NULL))[1] = 4
                THEN max(coalesce(end_time, ts))
           END AS end_time,
           CASE WHEN bool_or(event = 'order') THEN 4::smallint
                ELSE (array_agg(state ORDER BY ts DESC) FILTER (WHERE state IS NOT NULL))[1]
           END AS state,
           (array_agg(energy_kwh ORDER BY event = 'order' DESC, ts DESC)
               FILTER (WHERE energy_kwh IS NOT NULL))[1] AS energy_kwh,
           (array_agg(total_money ORDER BY event = 'order' DESC, ts DESC)
               FILTER (WHERE total_money IS NOT NULL))[1] AS total_money,
           (array_agg(stop_reason ORDER BY ts DESC)
               FILTER (WHERE event = 'order' AND stop_reason IS NOT NULL))[1] AS stop_reason,
           (array_agg(vin::text ORDER BY event = 'order' DESC, ts DESC)
               FILTER (WHERE vin IS NOT NULL))[1] AS vin,
           max(ts) AS last_ts,
           CASE WHEN bool_or(event = 'order') THEN 'order' ELSE 'progress' END AS source
    FROM charging_session_events
    GROUP BY operator_id, connector_id, start_charge_seq
) o
CROSS JOIN LATERAL (
    SELECT max(t.power_kw) AS peak_power_kw,
           (array_agg(t.vin::text ORDER BY t.ts DESC) FILTER (WHERE t.vin IS NOT NULL))[1] AS vin
    FROM charger_telemetry t
    WHERE t.operator_id = o.operator_id AND t.connector_id = o.connector_id
      AND t.ts >= o.start_time AND t.ts <= coalesce(o.end_time, o.last_ts)
) tel
UNION ALL
SELECT r.operator_id, r.connector_id, NULL::text, tel.vin, r.start_time, r.end_time,
       (CASE WHEN r.end_time IS NULL THEN 2 ELSE 4 END)::smallint, tel.energy_kwh,
       tel.peak_power_kw, NULL::double precision, NULL::smallint, 'status'
FROM (
    SELECT operator_id, connector_id, bool_and(charging) AS charging, min(ts) AS start_time,
           lead(min(ts)) OVER (PARTITION BY operator_id, connector_id ORDER BY min(ts))
               AS end_time
    FROM (
        SELECT operator_id, connector_id, ts, charging,
               count(*) FILTER (WHERE changed) OVER (
                   PARTITION BY operator_id, connector_id ORDER BY ts, source
                   ROWS UNBOUNDED PRECEDING) AS run
        FROM (
            SELECT operator_id, connector_id, ts, source, status = 3 AS charging,
                   (status = 3) IS DISTINCT FROM (lag(status) OVER w = 3) AS changed
            FROM connector_status_events
            WINDOW w AS (PARTITION BY operator_id, connector_id ORDER BY ts, source)
        ) statuses
    ) numbered
    GROUP BY operator_id, connector_id, run
) r
CROSS JOIN LATERAL (
    SELECT max(t.energy_kwh) AS energy_kwh, max(t.power_kw) AS peak_power_kw,
           (array_agg(t.vin::text ORDER BY t.ts DESC) FILTER (WHERE t.vin IS NOT NULL))[1] AS vin
    FROM charger_telemetry t
    WHERE t.operator_id = r.operator_id AND t.connector_id = r.connector_id
      AND t.ts >= r.start_time AND (r.end_time IS NULL OR t.ts < r.end_time)
) tel
WHERE r.charging
  AND NOT EXISTS (
    SELECT 1 FROM charging_session_events e
    WHERE e.operator_id = r.operator_id AND e.connector_id = r.connector_id
      AND e.ts >= r.start_time
      AND (r.end_time IS NULL OR e.start_time < r.end_time)
  );
