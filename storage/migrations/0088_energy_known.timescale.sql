-- 0088_energy_known (TimescaleDB): the same energy as the plain flavour's (a frame whose
-- voltage or current is unknown is no longer a 0 kW frame: 0088_energy_known.plain.sql), without
-- losing an hour.
--
-- A continuous aggregate's query cannot be altered, and dropping vehicle_stats_1h to create it
-- again would lose every hour whose raw rows retention already dropped (it is kept forever by
-- default). So, per grain (1m, 1h):
--   * vehicle_stats_<grain>_energy is a new aggregate with the new select list (refreshed by
--     storage.policies from now on, which first materialises it once from the cut-over: a
--     refresh cannot run inside this migration's transaction);
--   * the 0003 aggregate, renamed vehicle_stats_<grain>_0003, is frozen (refresh policy
--     removed, materialized_only; its retention policy stays: storage.policies keeps it);
--   * vehicle_stats_<grain> becomes a view: the 0003 aggregate's rows before the cut-over, the
--     new one's from it. Same name and columns as before, so queries, the public views, the
--     _scoped views and the query database's imports read it as they read the aggregate.
-- The cut-over is ONE hour for both grains: the earliest of (0003 aggregate's watermark - its
-- refresh policy's start_offset), floored to the hour. Every bucket from there on the new
-- aggregate computes from the raw rows, so frames stored after the old aggregate's last refresh
-- and late frames its window would still have taken are not lost; every bucket before it keeps
-- 0003's figures (docs/operations.md, upgrade notes). vehicle_stats_cutover() returns it.
--
-- A database whose 0003 aggregates hold no row (a fresh install: this runs right after 0003;
-- or one that never stored a frame) has nothing to keep: they are dropped, the views read the
-- new aggregates alone and vehicle_stats_cutover() is NULL. Otherwise the frozen aggregates
-- stay, and since every refresh of the hypertable's aggregates copies its invalidations to each
-- aggregate's log, which only the aggregate's own refresh empties, storage.policies schedules
-- vehicle_stats_frozen_invalidations to delete their entries (never read: no refresh).
--
-- The new views and aggregates get the grants of the 0003 aggregates here, in this
-- transaction (the views their owner too): with database roles the readers (regulators, the
-- _scoped views' owner, public_fleet_stats_1h's) read them before migrate's roles step runs,
-- and for good if the one-time fill before it fails.

ALTER MATERIALIZED VIEW vehicle_stats_1m RENAME TO vehicle_stats_1m_0003;
ALTER MATERIALIZED VIEW vehicle_stats_1h RENAME TO vehicle_stats_1h_0003;

CREATE MATERIALIZED VIEW vehicle_stats_1m_energy
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    vin,
    time_bucket(INTERVAL '1 minute', ts) AS bucket,
    {{vehicle_stats}}
FROM vehicle_telemetry
GROUP BY vin, bucket
WITH NO DATA;

CREATE MATERIALIZED VIEW vehicle_stats_1h_energy
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    vin,
    time_bucket(INTERVAL '1 hour', ts) AS bucket,
    {{vehicle_stats}}
FROM vehicle_telemetry
GROUP BY vin, bucket
WITH NO DATA;

DO $$
DECLARE
    grain   text;
    old     text;
    cutover timestamptz;
    kept    boolean := false;
    agg     record;
    dep     record;
    acl     record;
    rel     text;
BEGIN
    -- Read before the refresh policies go: the window each old aggregate still refreshed.
    FOR agg IN
        SELECT c.view_name,
               c.materialization_hypertable_schema AS mschema,
               c.materialization_hypertable_name AS mname,
               _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(h.id))
                   AS watermark,
               (SELECT (j.config ->> 'start_offset')::interval
                FROM timescaledb_information.jobs j
                WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
                  AND ((j.hypertable_schema = c.view_schema AND j.hypertable_name = c.view_name)
                       OR (j.hypertable_schema = c.materialization_hypertable_schema
                           AND j.hypertable_name = c.materialization_hypertable_name))
                ORDER BY j.job_id LIMIT 1) AS start_offset
        FROM timescaledb_information.continuous_aggregates c
        JOIN _timescaledb_catalog.hypertable h
          ON h.schema_name = c.materialization_hypertable_schema
         AND h.table_name = c.materialization_hypertable_name
        WHERE c.view_schema = current_schema()
          AND c.view_name IN ('vehicle_stats_1m_0003', 'vehicle_stats_1h_0003')
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', agg.mschema, agg.mname)
        INTO STRICT kept;
        CONTINUE WHEN NOT kept OR agg.watermark < '0001-01-01 00:00Z';
        -- a policy without a start (refreshing everything) or none: from the watermark
        cutover := least(cutover, agg.watermark - coalesce(agg.start_offset, INTERVAL '0'));
    END LOOP;
    kept := cutover IS NOT NULL;
    cutover := date_trunc('hour', cutover, 'UTC');
    PERFORM remove_continuous_aggregate_policy('vehicle_stats_1m_0003', if_exists => true);
    PERFORM remove_continuous_aggregate_policy('vehicle_stats_1h_0003', if_exists => true);

    FOREACH grain IN ARRAY ARRAY['1m', '1h'] LOOP
        old := 'vehicle_stats_' || grain || '_0003';
        IF kept THEN
            EXECUTE format('ALTER MATERIALIZED VIEW %I SET (timescaledb.materialized_only = true)',
                           old);
            EXECUTE format($v$
                CREATE VIEW %1$I AS
                SELECT * FROM %2$I WHERE bucket < %4$L::timestamptz
                UNION ALL
                SELECT * FROM %3$I WHERE bucket >= %4$L::timestamptz$v$,
                'vehicle_stats_' || grain, old, 'vehicle_stats_' || grain || '_energy', cutover);
            EXECUTE format('COMMENT ON VIEW %I IS %L', 'vehicle_stats_' || grain,
                format('%s before %s (0003 energy, frozen), %s from then on (migration 0088)',
                       old, cutover, 'vehicle_stats_' || grain || '_energy'));
        ELSE
            EXECUTE format('CREATE VIEW %I AS SELECT * FROM %I', 'vehicle_stats_' || grain,
                           'vehicle_stats_' || grain || '_energy');
            EXECUTE format('COMMENT ON VIEW %I IS %L', 'vehicle_stats_' || grain,
                format('%s (migration 0088; no 0003 bucket to keep)',
                       'vehicle_stats_' || grain || '_energy'));
        END IF;
        -- The 0003 aggregate's grants on the view and the new aggregate, and its owner on the
        -- view (which reads the aggregates with its owner's rights, as the aggregate read its
        -- materialisation): the readers read on before migrate's roles step, which gives the
        -- rest to the owner role afterwards. Not the new aggregate's owner: storage.policies
        -- adds its policies before that step, and TimescaleDB refuses a job for a hypertable
        -- whose owner may not log in (storage.roles' owner role is NOLOGIN).
        EXECUTE format('ALTER VIEW %I OWNER TO %I', 'vehicle_stats_' || grain,
            (SELECT c.relowner::regrole::text FROM pg_class c
             WHERE c.oid = format('%I', old)::regclass));
        FOR rel IN SELECT unnest(ARRAY['vehicle_stats_' || grain,
                                       'vehicle_stats_' || grain || '_energy']) LOOP
            -- no ACL yet is the owner's default one: the view's owner reads the new aggregate
            FOR acl IN
                SELECT a.privilege_type, a.is_grantable,
                       CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                            ELSE quote_ident(a.grantee::regrole::text) END AS grantee
                FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                WHERE c.oid = format('%I', old)::regclass
            LOOP
                EXECUTE format('GRANT %s ON %I TO %s%s', acl.privilege_type, rel, acl.grantee,
                               CASE WHEN acl.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END LOOP;
    END LOOP;
    -- Views read the aggregates by oid, so the rename took them along (public_fleet_stats_1h,
    -- storage.roles' _scoped views): each is made again over the view of its old name, with
    -- its options (security_barrier: CREATE OR REPLACE VIEW would drop them).
    FOR dep IN
        SELECT DISTINCT v.oid, v.relname, v.reloptions
        FROM pg_depend d
        JOIN pg_rewrite r ON r.oid = d.objid
        JOIN pg_class v ON v.oid = r.ev_class
        WHERE d.classid = 'pg_rewrite'::regclass
          AND d.refobjid IN ('vehicle_stats_1m_0003'::regclass, 'vehicle_stats_1h_0003'::regclass)
          AND v.relkind = 'v'
          AND v.relname NOT IN ('vehicle_stats_1m', 'vehicle_stats_1h')
    LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %I %s AS %s', dep.relname,
            CASE WHEN dep.reloptions IS NULL THEN ''
                 ELSE 'WITH (' || array_to_string(dep.reloptions, ', ') || ')' END,
            regexp_replace(pg_get_viewdef(dep.oid),
                           '\mvehicle_stats_(1m|1h)_0003\M', 'vehicle_stats_\1', 'g'));
    END LOOP;
    IF NOT kept THEN
        DROP MATERIALIZED VIEW vehicle_stats_1m_0003;
        DROP MATERIALIZED VIEW vehicle_stats_1h_0003;
    END IF;
    -- where the views pass from the frozen aggregates to the new ones (NULL: no frozen ones);
    -- storage.policies materialises the new ones from there
    -- (as epoch seconds: a timestamp's text would be read back under the caller's DateStyle)
    EXECUTE format('CREATE FUNCTION vehicle_stats_cutover() RETURNS timestamptz '
                   'LANGUAGE sql IMMUTABLE AS %L',
                   CASE WHEN cutover IS NULL THEN 'SELECT NULL::timestamptz'
                        ELSE format('SELECT to_timestamp(%s)', extract(epoch FROM cutover)) END);
END
$$;

-- Deletes the frozen aggregates' invalidation-log entries (scheduled by storage.policies while
-- they exist; config.schema names the schema). Nothing reads them: a frozen aggregate is never
-- refreshed. It writes TimescaleDB's catalog, so it needs the catalog owner's rights (the job
-- runs as the user who added it: storage.policies adds it only for one who has them).
CREATE OR REPLACE PROCEDURE vehicle_stats_frozen_invalidations(job_id integer, config jsonb)
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log l
    USING timescaledb_information.continuous_aggregates c
    JOIN _timescaledb_catalog.hypertable h
      ON h.schema_name = c.materialization_hypertable_schema
     AND h.table_name = c.materialization_hypertable_name
    WHERE l.materialization_id = h.id
      AND c.view_schema = config ->> 'schema'
      AND c.view_name IN ('vehicle_stats_1m_0003', 'vehicle_stats_1h_0003');
END
$$;
