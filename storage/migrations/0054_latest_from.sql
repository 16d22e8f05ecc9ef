-- 0054_latest_from: where the latest_state tuples still pending in a writer's memory begin.
--
-- With storage.latest_interval_ms > 0 the writer merges latest_state once per interval per
-- partition, not with every batch (storage/latest_pending.py, docs/storage.md). Each write
-- transaction stores here, beside next_offset, the first Kafka offset of the partition whose
-- latest tuple was committed but not merged yet (NULL: nothing pending). After a crash the
-- next owner seeks here and reads the range up to next_offset again only to refill those
-- tuples. The same on PostgreSQL and TimescaleDB; idempotent like 0052.

ALTER TABLE consumer_offsets ADD COLUMN IF NOT EXISTS latest_from bigint;
