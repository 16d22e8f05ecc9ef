-- 0080_raw_frames_offset_key (TimescaleDB): the key's new column orders the compressed rows
-- too (was 'ts DESC, command'), so a compressed chunk's batches are still found by the key.
ALTER TABLE raw_frames SET (timescaledb.compress_orderby = 'ts DESC, kafka_offset');
