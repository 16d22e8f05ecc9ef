"""GB/T 32960-2025 signatures through the running service (``nev-ingest run``) on the dev
stack's Kafka and PostgreSQL: under ``reject`` a forged frame and a frame of a VIN without a key
go to the dead-letter topic with ``bad_signature`` while the good frames around them are stored;
under ``flag`` everything is stored and the bad outcomes are in ``signature_events``; an
activation registers its key (trust on first use) and the vehicle's next frames verify."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from devtools.sim.fleet import Message
from devtools.sim.signing import RSA, SM2, activation, make_key, realtime
from storage.keys import DeviceKey, add
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

SIGNED = "LSIGOK00000000001"
STRANGER = "LSIGUNKNOWN000001"
NEWCOMER = "LSIGNEW0000000001"
UNSIGNED = "LSIGNONE000000001"


def msg(value: bytes, kind: str = "realtime") -> Message:
    return Message(0, value[4:21], value, kind)


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_reject_dead_letters_forged_and_unknown_key_frames(
    env: PipelineEnv, tmp_path: Path
) -> None:
    key = make_key(tmp_path, RSA)
    conn = await asyncpg.connect(env.dsn)
    try:
        await add(conn, ps.SCHEMA, DeviceKey(SIGNED, RSA, key.public_pem, "admin"))
    finally:
        await conn.close()
    now = (time.time_ns() // 1_000_000_000 - 60) * 1000  # whole seconds, as frames carry
    good = [realtime(SIGNED, now + i * 1000, key) for i in range(8)]
    forged = realtime(SIGNED, now + 20_000, key, forge=True)
    stranger = realtime(STRANGER, now + 21_000, key)
    messages = [msg(v) for v in good[:4]] + [msg(forged), msg(stranger)]
    messages += [msg(v) for v in good[4:]]

    async with ps.serving(
        env, "sig-reject", NEV_SECURITY_SIGNATURES="reject", NEV_SECURITY_VERIFY="every"
    ) as svc:
        await ps.produce_and_store(env, messages)
        assert await ps.stored_rows(env.dsn) == Counter(
            {(SIGNED, now + i * 1000): 1 for i in range(8)}
        )
        dead = await ps.read_topic(env.kafka, env.dlq, expect=2)
        assert {r.value for r in dead} == {forged, stranger}
        reasons = {(ps.header(r.headers, "error.reason") or b"").decode() for r in dead}
        assert reasons == {"bad_signature"}
        details = b" ".join(ps.header(r.headers, "error.detail") or b"" for r in dead)
        assert b"unknown_key" in details and b"invalid" in details
        assert svc.metric("nev_ingest_signature_checks_total", status="valid") == 8
        assert svc.metric("nev_ingest_signature_checks_total", status="invalid") == 1


async def test_flag_stores_and_records_and_activation_registers_a_key(
    env: PipelineEnv, tmp_path: Path
) -> None:
    key = make_key(tmp_path, SM2)
    now = (time.time_ns() // 1_000_000_000 - 60) * 1000  # whole seconds, as frames carry
    act = activation(NEWCOMER, now, key)
    after = [realtime(NEWCOMER, now + (i + 1) * 1000, key) for i in range(5)]
    forged = realtime(NEWCOMER, now + 10_000, key, forge=True)
    bare = realtime(UNSIGNED, now + 11_000, None)
    # One key (the VIN) per vehicle: one partition, so the activation comes first.
    messages = [msg(act, "activation"), *map(msg, after), msg(forged), msg(bare)]

    async with ps.serving(
        env, "sig-flag", NEV_SECURITY_SIGNATURES="flag", NEV_SECURITY_VERIFY="every"
    ):
        await ps.produce_and_store(env, messages)
        stored = await ps.stored_rows(env.dsn)
        assert sum(stored.values()) == 7  # the forged and the unsigned frame too
        keys = await ps.until(
            lambda: _fetch(
                env.dsn, f"SELECT vin, algorithm, public_key, source FROM {ps.SCHEMA}.device_keys"
            ),
            timeout_s=30,
            what="the activation's key in device_keys",
        )
        assert [(r["vin"], r["algorithm"], bytes(r["public_key"]), r["source"]) for r in keys] == [
            (NEWCOMER, SM2, key.raw, "activation")
        ]
        events = await ps.until(
            lambda: _fetch(env.dsn, f"SELECT vin, status FROM {ps.SCHEMA}.signature_events"),
            timeout_s=30,
            what="the flagged outcomes in signature_events",
        )
        # The frames after the activation verified: the forged one is the only invalid.
        assert sorted((r["vin"], r["status"]) for r in events) == [
            (NEWCOMER, "invalid"),
            (UNSIGNED, "unsigned"),
        ]
    dead = await ps.end_offsets(env.kafka, env.dlq)
    assert sum(dead.values()) == 0
