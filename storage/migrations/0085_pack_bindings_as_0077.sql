-- 0085_pack_bindings_as_0077: pack_bindings as 0077 defined it again. 0084 took "the kind of
-- the report before" over the rows other than departures, so that a departure could not
-- decide whether a report without a site is a move; but that dropped the common case it should
-- keep: a pack whose vehicle logged in without it (a departure, 'unbound') then reporting
-- stage 1 with no site (packs in a vehicle report no site) was judged against the vehicle
-- before the departure, "the stay goes on", and the pack looked unbound for good (a second
-- read: 0077 gives three bindings ending (vehicle, NULL), 0084 two ending 'unbound'). Back to
-- 0077's rule; what 0084 meant to fix (a swap SWAPSZ001 -> (swap_station, NULL) after a
-- departure; `nev-ingest query swaps` differing from this view as --lookback moves) is a note
-- for the next change. storage/queries_packs.py (_RUNS) runs the same SQL for the CLI.
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
                           lag(place_kind) OVER w AS prior_kind
                    FROM pack_places
                    WHERE place_kind <> 'unknown'
                    WINDOW w AS (PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id)
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
