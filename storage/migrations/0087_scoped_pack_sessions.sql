-- 0087_scoped_pack_sessions: vehicle_pack_history_scoped and charging_sessions_scoped, so an
-- OEM login reads its vehicles' pack history and a charging login its connectors' sessions on
-- TimescaleDB too (docs/security.md, "Row-level access"). There the hypertables under the two
-- views carry no row-level policy (TimescaleDB refuses it on compressed hypertables), so
-- storage.roles grants the scoped roles neither them nor the views, which read them with the
-- caller's rights (security_invoker). A _scoped view that SELECTs from such a view does not
-- help: a security_invoker view checks its tables as the querying login even when a view with
-- its owner's rights reads it ("permission denied for table battery_pack_telemetry"). So each
-- _scoped view here is a copy of the view's query, with the owner's rights (it reads the
-- tables as their owner) and the scope's predicate: the same as storage.roles_policies.Scope's
-- (account_scopes of current_user, which an owner's-rights view leaves the querying login).
-- The predicate is on a column every row of the query is keyed by (the VIN; the connector's
-- operator_id, by which every window and lateral join of charging_sessions is partitioned), so
-- PostgreSQL pushes it down to the tables' scans and the answer is the view's rows of the
-- login's scope. security_barrier: a caller's function never sees a row before the predicate.
--
-- One text per query: the two views are made again from the same parts as their copies (the
-- queries are unchanged: 0078's vehicle_pack_history, 0009's charging_sessions). CREATE OR
-- REPLACE VIEW replaces a view's options too, which would drop the security_invoker that
-- storage.roles set and leave an OEM reading every VIN through vehicle_pack_history on plain
-- PostgreSQL until the roles' run after the migrations: the views that had it get it back in
-- this same transaction. The same on both flavours; storage.roles grants the copies to the
-- oem and charging roles (and leaves them with their owner's rights, as every _scoped view).

SELECT set_config(
    'nev.m0087_invoker',
    coalesce(string_agg(c.relname, ','), ''),
    true
)
FROM pg_class c
WHERE c.oid IN (to_regclass('vehicle_pack_history'), to_regclass('charging_sessions'))
  AND 'security_invoker=true' = ANY (c.reloptions);

CREATE OR REPLACE VIEW vehicle_pack_history AS
{{pack_history}};

CREATE OR REPLACE VIEW charging_sessions AS
{{charging_sessions}};

DO $$
DECLARE
    had text[] := string_to_array(current_setting('nev.m0087_invoker', true), ',');
BEGIN
    IF 'vehicle_pack_history' = ANY (had) THEN
        ALTER VIEW vehicle_pack_history SET (security_invoker = true);
    END IF;
    IF 'charging_sessions' = ANY (had) THEN
        ALTER VIEW charging_sessions SET (security_invoker = true);
    END IF;
END
$$;

CREATE OR REPLACE VIEW vehicle_pack_history_scoped WITH (security_barrier = true) AS
SELECT *
FROM (
    {{pack_history}}
) h
WHERE h.vin LIKE ANY (ARRAY(
    SELECT p || '%' FROM account_scopes a, unnest(a.vin_prefixes) p
    WHERE a.login = current_user AND a.family = 'oem'));

CREATE OR REPLACE VIEW charging_sessions_scoped WITH (security_barrier = true) AS
SELECT *
FROM (
    {{charging_sessions}}
) c
WHERE c.operator_id = ANY (ARRAY(
    SELECT o FROM account_scopes a, unnest(a.operator_ids) o
    WHERE a.login = current_user AND a.family = 'charging'));
