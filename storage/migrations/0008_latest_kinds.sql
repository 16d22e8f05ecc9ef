-- 0008_latest_kinds: latest_state holds chargers' connectors and standalone packs beside the
-- vehicles (entity_kind 'charger' | 'battery'), so "online now" and "latest" are one table
-- for the three kinds. The columns every kind shares keep their names (ts, received_at,
-- soc_pct, total_voltage_v, total_current_a, max/min_temp_c, max/min_cell_voltage_v,
-- max_alarm_level, general_flags, insulation_kohm); what only chargers or packs have is
-- added here, nullable (a vehicle row leaves them NULL; NULLs cost nothing in a heap row).
--
-- entity_id: a connector is operator_id || ':' || connector_id (the OperatorID has a fixed
-- length of 9, so the form is unambiguous); a pack is its 24-character pack code.
-- Catalog-only on both flavours (no rewrite).

ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS operator_id text;      -- charger: OperatorID
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS connector_status smallint; -- 0,1,2,3,4,255
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS power_kw real;
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS energy_kwh double precision;
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS connected_vin text;    -- charger: the EV
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS soh_pct smallint;      -- pack
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS cycle_count integer;   -- pack
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS lifecycle_stage smallint; -- pack, 1..5
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS place_id text;         -- pack: site id / VIN

-- "chargers of operator OP in status S right now".
CREATE INDEX IF NOT EXISTS latest_state_charger_status
    ON latest_state (operator_id, connector_status) WHERE entity_kind = 'charger';
