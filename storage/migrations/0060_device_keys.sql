-- 0060_device_keys: the registry of vehicle public keys that GB/T 32960-2025 signatures are
-- verified against (docs/security.md, "Signatures"), and the signature outcomes the worker
-- records when security.signatures = flag.
--
-- Plain tables on PostgreSQL and TimescaleDB alike (one file): keys are one row per vehicle
-- and key rotation, events one row per flagged frame, both far from telemetry volumes.
-- Idempotent (IF NOT EXISTS) like every migration here.
--
-- A VIN has at most one active key (revoked_at IS NULL): the partial unique index is what
-- makes trust-on-first-use safe against two workers registering two keys at once: the second
-- INSERT ... ON CONFLICT DO NOTHING finds the first and the worker counts a key conflict.

CREATE TABLE IF NOT EXISTS device_keys (
    id          bigserial PRIMARY KEY,
    vin         text NOT NULL,
    chip_id     text,                               -- the security chip's id (activation)
    algorithm   smallint NOT NULL CHECK (algorithm IN (1, 2)),  -- Table 8: 1 SM2, 2 RSA
    public_key  bytea NOT NULL,                     -- as received: raw, DER or PEM bytes
    source      text NOT NULL CHECK (source IN ('activation', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE UNIQUE INDEX IF NOT EXISTS device_keys_active ON device_keys (vin)
    WHERE revoked_at IS NULL;

-- status: invalid | unsigned | unknown_key | bad_key | unsupported | algorithm_mismatch |
-- key_conflict (an activation carrying a key other than the VIN's registered one).
-- ts is the frame's own time; the unique key makes a redelivered frame's event a no-op.
CREATE TABLE IF NOT EXISTS signature_events (
    vin          text NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    status       text NOT NULL,
    PRIMARY KEY (vin, ts, status)
);
