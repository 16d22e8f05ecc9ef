-- 0055_latest_state_restore: the alert-state restore pages through a partition's entities.
--
-- On partition assignment the worker replays the last rule window of the partition's recently
-- active entities (alerts/replay.py). With millions of entities per worker it reads them a page
-- at a time in entity order, resuming after the last page it applied (keyset pagination): this
-- index makes each page one index range. With only latest_state_by_partition (0052) every page
-- would scan and sort the whole partition. None of these columns changes when an entity's latest
-- frame is merged, so latest_state keeps its HOT updates. The same on PostgreSQL and
-- TimescaleDB; idempotent like 0052.

CREATE INDEX IF NOT EXISTS latest_state_restore
    ON latest_state (kafka_topic, kafka_partition, entity_kind, entity_id);
