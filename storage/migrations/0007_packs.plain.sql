-- 0007_packs (plain PostgreSQL): the shared tables of 0007_packs.sql, range-partitioned by
-- frame time (partitions ahead and on demand, as for 0002).

CREATE INDEX IF NOT EXISTS pack_telemetry_ts_brin ON pack_telemetry USING brin (ts);
