-- 0080_raw_frames_offset_key: every archived frame keeps its row. 0002 keyed raw_frames by
-- (vin, ts, command), a vehicle frame's own key, but a pile sends several frames in one second
-- (one per connector or group of connectors, all real-time 0x02, the same header code): the
-- second one's archive row was skipped as a duplicate (and its batch took the slow conflict
-- path), so its stored rows could not be traced to their frame. A frame is one Kafka record,
-- so the key is now the entity and time (the lookup: "the frames of this vin at ts") plus the
-- record's offset: (vin, ts, kafka_offset). An entity's records are on one partition of its
-- topic (the key is the identity), so two frames of one entity at one second have two
-- offsets; the same record written again (a replay, another consumer group) is still a no-op.
-- Not the whole (topic, kafka_partition, kafka_offset): measured on PostgreSQL 15, that key's
-- index is 19 % larger and a COPY 6 % slower, for a case (one entity's records of one second on
-- two partitions with equal offsets) that only a repartition could make; kafka_offset keeps the
-- index entry the width of command's (8-byte alignment), so the vehicles' cost is unchanged.
--
-- The same on both flavours (as 0076); on TimescaleDB the compression order follows the key
-- in 0080_raw_frames_offset_key.timescale.sql. The new key is built over the whole archive
-- (7 days by default): a migration of a large archive takes the index build's time.

ALTER TABLE raw_frames DROP CONSTRAINT raw_frames_pkey;
ALTER TABLE raw_frames ADD PRIMARY KEY (vin, ts, kafka_offset);
