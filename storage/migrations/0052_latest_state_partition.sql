-- 0052_latest_state_partition: which Kafka partition each entity's frames come from.
--
-- vehicle_telemetry has no partition column, and the producers' partitioner is not ours to
-- assume (Java clients hash the key with murmur2, librdkafka with CRC32, sarama with FNV-1a),
-- so the writer records the partition it actually read an entity's frames from. On partition
-- assignment the rule engine replays the last rule window of the partition's entities
-- (alerts/replay.py, docs/alerts.md) and finds them through this index. The writer stamps an
-- entity once per assignment (not per frame) and only writes when the partition changed, so
-- latest_state keeps its HOT updates (updated_at and ts are not indexed).
-- The same on PostgreSQL and TimescaleDB; idempotent like 0050.

ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS kafka_topic text;
ALTER TABLE latest_state ADD COLUMN IF NOT EXISTS kafka_partition integer;

CREATE INDEX IF NOT EXISTS latest_state_by_partition
    ON latest_state (kafka_topic, kafka_partition);
