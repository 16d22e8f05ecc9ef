-- 0083_shard_identity: which shard of the partition map this database is. Partition p of every
-- raw topic belongs to shard p % N (docs/storage.md, Shards); a reordered storage.shards list, or
-- a new N without the procedure of "Changing N", silently moved partitions to a database that
-- holds none of their offsets, latest state or open alerts. `nev-ingest migrate` records the
-- shard's (index, N) here (one row; (0, 1) for a single database) and `run`/`migrate` refuse a
-- configuration that gives the database another place (`storage.shard_map`).

CREATE TABLE IF NOT EXISTS shard_identity (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    shard_index integer     NOT NULL CHECK (shard_index >= 0),
    shard_count integer     NOT NULL CHECK (shard_count > shard_index),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
