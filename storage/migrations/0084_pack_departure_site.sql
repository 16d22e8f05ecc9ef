-- 0084_pack_departure_site: a departure does not decide whether a report without a site is a
-- move. 0077 left out a report without a site (place_id NULL) of the kind of the row before
-- it, but took that kind over every row, departures ('unbound': a vehicle's login no longer
-- naming the pack) included. A report after a departure was then always of "another kind"
-- and kept: a pack at SWAPSZ001 whose old vehicle logs in without it, then reporting stage 2
-- with no site, showed a swap SWAPSZ001 -> (swap_station, NULL), the place 0077 meant to
-- suppress. And `nev-ingest query swaps` (which finds departures from the logins of its range
-- and lookback only) gave other swaps than this view as the lookback moved. The kind before is
-- now that of the previous row other than a departure; departures are still in the runs
-- (a binding 'unbound' after the vehicle's own report). pack_swaps reads pack_bindings and
-- needs no change. storage/queries_packs.py (_RUNS) runs the same SQL for the CLI; the query
-- database re-makes this view from a shard's definition (storage/fdw_views.py).
-- The same on both flavours; the columns are 0009's, so the view is replaced in place.

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
                FROM (
                    SELECT pack_code, ts, place_kind, place_id, position, source,
                           lag(place_kind) OVER (
                               PARTITION BY pack_code, place_kind = 'unbound'
                               ORDER BY ts, source, place_kind, place_id) AS prior_kind
                    FROM pack_places
                    WHERE place_kind <> 'unknown'
                ) reported
                WHERE place_id IS NOT NULL OR place_kind IS DISTINCT FROM prior_kind
                WINDOW w AS (PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id)
            ) known
            WHERE place_kind <> 'unbound' OR (before_kind = 'vehicle' AND before_id = place_id)
            WINDOW w AS (PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id)
        ) reports
    ) numbered
    GROUP BY pack_code, run
) runs;
