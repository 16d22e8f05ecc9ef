-- 0006_chargers (TimescaleDB): the shared tables of 0006_chargers.sql as hypertables on the
-- frame time. Chunk intervals, compression and retention policies are set by storage.policies
-- at every `nev-ingest migrate`, as for 0002; the intervals below are placeholders until then.
-- Compression segments by connector (one connector's rows compress together).

CREATE INDEX IF NOT EXISTS connector_status_events_status_ts
    ON connector_status_events (status, ts DESC);

SELECT create_hypertable('connector_status_events', by_range('ts', INTERVAL '1 day'), if_not_exists => true);
SELECT create_hypertable('charger_telemetry', by_range('ts', INTERVAL '1 hour'), if_not_exists => true);
SELECT create_hypertable('charging_session_events', by_range('ts', INTERVAL '1 day'), if_not_exists => true);
SELECT create_hypertable('charger_faults', by_range('ts', INTERVAL '1 day'), if_not_exists => true);

ALTER TABLE connector_status_events SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'operator_id, connector_id',
    timescaledb.compress_orderby = 'ts DESC, source');
ALTER TABLE charger_telemetry SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'operator_id, connector_id',
    timescaledb.compress_orderby = 'ts DESC, source');
ALTER TABLE charging_session_events SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'operator_id, connector_id',
    timescaledb.compress_orderby = 'ts DESC, start_charge_seq, event, source');
ALTER TABLE charger_faults SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'operator_id, connector_id',
    timescaledb.compress_orderby = 'ts DESC, source');
