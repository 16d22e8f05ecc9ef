-- 0078_pack_history_logins: one rule for vehicle logins naming no pack. A login with no RESS
-- codes (cardinality(pack_codes) = 0: terminals that do not report them) says nothing about
-- the packs, and pack_places / pack_bindings (0009) skip it; but vehicle_pack_history took the
-- vehicle's latest login even when it was such a one, so a pack's telemetry after it had no
-- pack code and dropped out of the pack's history while its binding went on. Such logins are
-- skipped here too, as in the CLI's history (storage/queries_packs.py, bindings' `until`).
-- The same on both flavours; the columns are 0009's, so the view is replaced in place.

CREATE OR REPLACE VIEW vehicle_pack_history AS
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
WHERE l.pack_code IS NOT NULL;
