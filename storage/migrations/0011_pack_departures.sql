-- 0011_pack_departures: a vehicle login that no longer names a pack ends that pack's stay in
-- the vehicle. Before, a pack's binding to a vehicle lasted until the pack was reported
-- somewhere else (a station's frames, another vehicle's login), which can be hours after the
-- vehicle logged in with a different pack: "was pack B in V1 at t?" answered yes for that gap.
--
-- pack_places gains a 'unbound' report (place_id = the VIN it left) at every login of a
-- vehicle whose previous login named the pack and which does not; a login naming no pack at
-- all (n = 0, terminals that do not report their RESS codes) says nothing and is skipped, also
-- as "previous login". pack_bindings counts such a report only when the pack's report just
-- before it (frame time) is that vehicle's: a pack already reported elsewhere (a station's
-- frames before the vehicle's next login) has left, and the departure says nothing new. It
-- shows the gap as a binding of kind 'unbound'. pack_swaps leaves those out (a swap is leaving
-- one place and appearing at another, at the time it appears there) and so is never a return
-- to the place it left (a pack taken out of a vehicle and put back). Frame time decides, as
-- everywhere in 0009. The same on both flavours; storage/queries_packs.py applies the same
-- rules to one pack.

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
