-- vehicle_pack_history's query (0078's, unchanged): 0087 makes both the view and its
-- vehicle_pack_history_scoped copy from this one text.
SELECT l.pack_code, t.vin, t.ts, t.pack AS position, t.voltage_v, t.current_a, t.cell_count,
       t.first_cell, t.cell_voltages_mv, t.probe_temps_c, t.cell_min_mv, t.cell_max_mv,
       t.probe_min_c, t.probe_max_c
FROM battery_pack_telemetry t
CROSS JOIN LATERAL (
    SELECT s.pack_codes[t.pack] AS pack_code
    FROM vehicle_sessions s
    WHERE s.vin = t.vin AND s.event = 'login' AND cardinality(s.pack_codes) > 0
      AND s.ts <= t.ts
    ORDER BY s.ts DESC
    LIMIT 1
) l
WHERE l.pack_code IS NOT NULL
