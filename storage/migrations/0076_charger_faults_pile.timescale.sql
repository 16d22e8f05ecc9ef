-- 0076_charger_faults_pile (TimescaleDB): the key's new column orders the compressed rows too,
-- so a compressed chunk's batches are still found by the whole key.
ALTER TABLE charger_faults SET (timescaledb.compress_orderby = 'ts DESC, charger_id, source');
