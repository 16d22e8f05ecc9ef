-- 0070_roles: what the database roles need that is schema, not cluster (docs/security.md,
-- "Database roles and row-level access"). The roles themselves, their grants and the row-level
-- policies are names from the configuration ([roles]): storage/roles.py reconciles them after
-- the migrations, on every `nev-ingest migrate` with roles.enabled. The same on both flavours;
-- idempotent like every migration here.

-- Which rows a scoped login may read: an enterprise (OEM) account its vehicles by VIN prefix
-- (the WMI, or WMI + a manufacturer's own VDS characters), a charging operator its connectors
-- by T/CEC OperatorID. Keyed by the login's role name: the row-level policies match it with
-- current_user. Written by `nev-ingest roles grant`. The CHECKs keep LIKE's wildcards (% and _)
-- and anything but VIN characters out of the prefixes: a prefix is spliced into a LIKE pattern.
CREATE TABLE IF NOT EXISTS account_scopes (
    login           text PRIMARY KEY,
    family          text NOT NULL CHECK (family IN ('oem', 'charging')),
    vin_prefixes    text[] NOT NULL DEFAULT '{}',
    operator_ids    text[] NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT account_scopes_vin_prefixes
        CHECK (array_to_string(vin_prefixes, ',') ~ '^([A-HJ-NPR-Z0-9]{1,17}(,|$))*$'),
    CONSTRAINT account_scopes_operator_ids
        CHECK (array_to_string(operator_ids, ',') ~ '^([A-Z0-9]{9}(,|$))*$')
);

-- Public statistics: what the public-statistics role may read, and all it may read. Positions
-- are counted per cell of 0.01 degree (~1.1 km north-south, ~1 km east-west at Beijing), never
-- one row per vehicle; no VIN, entity id or frame time finer than the minute. These views run
-- with their owner's rights (not security_invoker): the public role has no grant on the tables.
CREATE OR REPLACE VIEW public_vehicle_positions AS
SELECT round(longitude::numeric, 2)::double precision AS longitude,
       round(latitude::numeric, 2)::double precision AS latitude,
       count(*) AS vehicles,
       count(*) FILTER (WHERE charging_state = 1) AS charging,
       round(avg(soc_pct)) AS soc_avg_pct,
       date_trunc('minute', max(ts)) AS latest_minute
FROM latest_state
WHERE entity_kind = 'vehicle' AND position_valid
  AND longitude IS NOT NULL AND latitude IS NOT NULL
GROUP BY 1, 2;

-- Fleet totals per hour, from the hourly per-vehicle aggregate (a table or a continuous
-- aggregate, by flavour: the same columns).
CREATE OR REPLACE VIEW public_fleet_stats_1h AS
SELECT bucket,
       count(*) AS vehicles,
       sum(frames) AS frames,
       sum(distance_km) AS distance_km,
       sum(energy_out_kwh) AS energy_out_kwh,
       sum(energy_in_kwh) AS energy_in_kwh,
       sum(alarm_frames) AS alarm_frames,
       sum(severe_alarm_frames) AS severe_alarm_frames
FROM vehicle_stats_1h
GROUP BY bucket;

-- Connectors per operator and status now (operators are companies, listed publicly).
CREATE OR REPLACE VIEW public_connector_status AS
SELECT operator_id, connector_status, count(*) AS connectors
FROM latest_state
WHERE entity_kind = 'charger'
GROUP BY operator_id, connector_status;
