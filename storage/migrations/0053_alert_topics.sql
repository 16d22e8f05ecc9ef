-- 0053_alert_topics: the source TOPIC of an alert and of an unpublished alert message.
--
-- kafka_partition alone is ambiguous: chargers come on two topics (the binary profile and the
-- T/CEC 102 pushes) whose partition numbers coincide, so the owner of partition 0 of one
-- adopted the other's open alerts and re-sent its outbox rows (a duplicate on the alerts topic
-- when both owners did). The writer fills kafka_topic from now on, and restore / forget /
-- re-send go by (kafka_topic, kafka_partition).
--
-- Rows written before this migration keep kafka_topic NULL (the topic names are settings, not
-- known here): they are matched by partition number on any topic of their entity kind, as
-- before (an old open alert is restored by the owners of that number on either charger topic,
-- which the alerts_one_open index keeps to one alert; an old outbox row may be sent twice, the
-- at-least-once the consumers already deduplicate). They age out as alerts clear and messages
-- are acknowledged. Numbered after 0050/0051, which create the two tables (migrations run in
-- version order on a fresh database). The same on PostgreSQL and TimescaleDB; idempotent.

ALTER TABLE alerts ADD COLUMN IF NOT EXISTS kafka_topic text;
ALTER TABLE alerts_outbox ADD COLUMN IF NOT EXISTS kafka_topic text;

DROP INDEX IF EXISTS alerts_open_by_partition;
CREATE INDEX IF NOT EXISTS alerts_open_by_source
    ON alerts (entity_kind, kafka_partition, kafka_topic) WHERE cleared_at IS NULL;
DROP INDEX IF EXISTS alerts_outbox_by_partition;
CREATE INDEX IF NOT EXISTS alerts_outbox_by_source
    ON alerts_outbox (kafka_partition, kafka_topic, id);
