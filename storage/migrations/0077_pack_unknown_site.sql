-- 0077_pack_unknown_site: a pack report without a site is not a new place. A standalone pack
-- frame without the site block, or with an all-NUL site ("unknown", docs/protocols/battery.md),
-- is in pack_places with place_id NULL; pack_bindings (0009) compared places with IS DISTINCT
-- FROM, so (swap_station, NULL) between two reports of (swap_station, 'SWAP-SH-001') was a
-- place of its own: two spurious bindings and two swaps, back and forth. Such a report of the
-- kind of the report before it says nothing new about where the pack is and is left out of the
-- run-finding (the stay goes on); one of another kind (a pack in a swap station now reporting
-- stage 1, in a vehicle, with no site) is a move, to a place of that kind whose id is unknown. pack_swaps reads pack_bindings and
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
