-- charging_sessions' query (0009's, unchanged): 0087 makes both the view and its
-- charging_sessions_scoped copy from this one text.
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
  )
