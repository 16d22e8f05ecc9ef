-- 0051_alerts_outbox: alert messages committed with their batch, published after the commit.
--
-- The writer inserts one row per alert change in the batch's transaction (alerts.outbox), so a
-- message exists exactly when the alert change it describes does. After the commit it produces
-- the rows to the alerts topic and, once Kafka acknowledged them, deletes them (in the next
-- transaction). A worker that dies between the commit and the acknowledgement leaves its rows:
-- whoever is assigned the partition next (or the same worker after a restart) sends them again.
-- At-least-once: a message may be sent twice, byte for byte the same (docs/kafka.md).
-- The same plain table on PostgreSQL and TimescaleDB; idempotent like 0050.

CREATE TABLE IF NOT EXISTS alerts_outbox (
    id              bigserial PRIMARY KEY,          -- send order
    kafka_partition integer,                        -- source partition: who re-sends it
    msg_key         bytea NOT NULL,                 -- the alerts-topic record, as produced
    msg_value       bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS alerts_outbox_by_partition ON alerts_outbox (kafka_partition, id);
