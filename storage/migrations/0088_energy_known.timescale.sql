-- 0088_energy_known (TimescaleDB): the same energy as the plain flavour's (a frame whose
-- voltage or current is unknown is no longer a 0 kW frame: 0088_energy_known.plain.sql), without
-- losing an hour.
--
-- A continuous aggregate's query cannot be altered, and dropping vehicle_stats_1h to create it
-- again would lose every hour whose raw rows retention already dropped (it is kept forever by
-- default). So, per grain (1m, 1h):
--   * the 0003 aggregate is renamed vehicle_stats_<grain>_0003 and frozen: its refresh policy
--     removed, materialized_only on (its retention policy stays: storage.policies keeps it);
--   * vehicle_stats_<grain>_energy is the aggregate with the new select list (refreshed by
--     storage.policies from now on, which also materialises it once from the cut-over: a
--     refresh cannot run inside this migration's transaction);
--   * vehicle_stats_<grain> becomes a view: the 0003 aggregate's rows before the cut-over, the
--     new one's from it. The cut-over is the 0003 aggregate's watermark when this runs: every
--     bucket before it is materialised there (that is what the readers saw), every later one
--     the new aggregate computes from the raw rows. Same name and columns as before, so
--     queries, the public views, the _scoped views, grants and the query database's imports
--     read it as they read the aggregate.
-- Buckets before the cut-over keep 0003's figures (docs/operations.md, upgrade notes).

ALTER MATERIALIZED VIEW vehicle_stats_1m RENAME TO vehicle_stats_1m_0003;
ALTER MATERIALIZED VIEW vehicle_stats_1h RENAME TO vehicle_stats_1h_0003;
SELECT remove_continuous_aggregate_policy('vehicle_stats_1m_0003', if_exists => true);
SELECT remove_continuous_aggregate_policy('vehicle_stats_1h_0003', if_exists => true);
ALTER MATERIALIZED VIEW vehicle_stats_1m_0003 SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW vehicle_stats_1h_0003 SET (timescaledb.materialized_only = true);

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
    cutover timestamptz;
    dep     record;
BEGIN
    FOREACH grain IN ARRAY ARRAY['1m', '1h'] LOOP
        SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(h.id))
        INTO STRICT cutover
        FROM timescaledb_information.continuous_aggregates c
        JOIN _timescaledb_catalog.hypertable h
          ON h.schema_name = c.materialization_hypertable_schema
         AND h.table_name = c.materialization_hypertable_name
        WHERE c.view_schema = current_schema() AND c.view_name = 'vehicle_stats_' || grain || '_0003';
        EXECUTE format($v$
            CREATE VIEW %1$I AS
            SELECT * FROM %2$I WHERE bucket < %4$L::timestamptz
            UNION ALL
            SELECT * FROM %3$I WHERE bucket >= %4$L::timestamptz$v$,
            'vehicle_stats_' || grain, 'vehicle_stats_' || grain || '_0003',
            'vehicle_stats_' || grain || '_energy', cutover);
        EXECUTE format('COMMENT ON VIEW %I IS %L', 'vehicle_stats_' || grain,
            format('%s before %s (0003 energy, frozen), %s from then on (migration 0088)',
                   'vehicle_stats_' || grain || '_0003', cutover,
                   'vehicle_stats_' || grain || '_energy'));
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
END
$$;
