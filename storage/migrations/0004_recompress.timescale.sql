-- 0004_recompress (TimescaleDB): re-segment the compressed chunks that compression rolled up.
--
-- compress_chunk_time_interval (storage.policies) merges each chunk, as it is compressed, into
-- the compressed chunk before it, up to a day: planning over long ranges stays cheap, but the
-- merged chunk keeps every source chunk's batches as they were - one short batch per VIN per
-- source chunk (30 rows at 5-minute chunks) - so it compresses ~3x where one batch per VIN
-- for the whole day gives ~13x (docs/performance.md). Decompressing and compressing the merged
-- chunk once re-segments it.
--
-- Which chunks: TimescaleDB's catalog counts a compressed chunk's batches
-- (numrows_post_compression) and how many of them its last full compression wrote
-- (numrows_frozen_immediately); a merge adds batches without a full compression, so "more
-- batches than the last compression wrote" is exactly "merged since", and after the
-- recompression the two are equal again: a chunk is recompressed once, not at every run.
-- Only chunks that stopped growing (range_end older than config.settled_after: the chunks
-- after it are compressed already) are taken, so a day is not recompressed at every merge.
--
-- storage.policies schedules it (add_job) for the schema in config.schema. Each chunk is its
-- own transaction (COMMIT after it), so a long backlog neither holds locks nor loses work
-- when it stops; there is no SET clause (transaction control forbids one), so every name is
-- qualified.
CREATE OR REPLACE PROCEDURE recompress_rolled_up(job_id integer, config jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    chunk regclass;
BEGIN
    FOR chunk IN
        SELECT format('%I.%I', i.chunk_schema, i.chunk_name)::regclass
        FROM timescaledb_information.chunks i
        JOIN _timescaledb_catalog.chunk c
          ON c.schema_name = i.chunk_schema AND c.table_name = i.chunk_name
        JOIN _timescaledb_catalog.compression_chunk_size s ON s.chunk_id = c.id
        WHERE i.hypertable_schema = config ->> 'schema'
          AND i.is_compressed
          AND s.numrows_post_compression > s.numrows_frozen_immediately
          AND i.range_end <= now() - (config ->> 'settled_after')::interval
        ORDER BY i.range_start
    LOOP
        PERFORM decompress_chunk(chunk);
        PERFORM compress_chunk(chunk);
        COMMIT;
    END LOOP;
END
$$;
