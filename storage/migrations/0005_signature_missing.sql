-- 0005_signature_missing: a 2025 real-time / reissue frame without the signature its data unit
-- must end with (GB/T 32960.3-2025 Table 7) is stored, but flagged, so that regulators can find
-- the frames nothing vouches for (docs/protocols/gbt32960.md). Column order is VehicleRow's:
-- the new field is its last, so this column goes at the end of the table.
--
-- The same on PostgreSQL and TimescaleDB; catalog-only on both (no partition or chunk is
-- rewritten). Nullable and without a default when added, on purpose: on TimescaleDB (2.23, the
-- PGlite engine) a boolean column added WITH a default to a hypertable that has compressed
-- chunks cannot be filtered on in those chunks ("unexpected column type 'boolean'" from the
-- vectorised filter, for NOT NULL DEFAULT false and for DEFAULT false alike); a column added
-- without one and given its default afterwards can (tests/integration/test_storage_timescale.py
-- applies this file to compressed chunks and filters on it). So rows stored before 0005 read
-- NULL - "not recorded" - and every row the writer stores says true or false (the writer always
-- sends the column; the default covers hand-written INSERTs).
--
-- The continuous aggregates and the plain summary tables do not count flagged frames: adding a
-- column to a continuous aggregate means dropping and rebuilding it (docs/storage.md).

ALTER TABLE vehicle_telemetry ADD COLUMN IF NOT EXISTS signature_missing boolean;
ALTER TABLE vehicle_telemetry ALTER COLUMN signature_missing SET DEFAULT false;
