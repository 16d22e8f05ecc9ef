"""Frames with a garbled identity or a motor / pack count that disagrees with their bytes go
to the dead-letter topic with their reason (``bad_identity``, ``count_mismatch``) in the
running service, while the good frames around them are stored exactly once. Before, such
frames were stored: under ``''`` / U+FFFD x 17 (one identity for every broken device) or with
a motor row read out of the position block."""

from __future__ import annotations

import random
import time
from collections import Counter

import asyncpg
import pytest

from devtools.sim.envelope import reseal
from devtools.sim.fleet import FleetOptions, Message, SimVehicle, fleet_messages
from ingest.decoders import Frame, encode_frame
from ingest.decoders.encoder import encode_block
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

# IDs that used to be stored garbled or to collapse into one shared identity.
BAD_IDS = [
    b"\xff" * 17,  # -> U+FFFD x 17 ...
    b"\xfe" * 17,  # ... the same "device"
    b"\x00" * 17,  # -> ''
    b"LNEVBAD0\x0000000001",  # a NUL inside: PostgreSQL text refuses it
    "LNEVBAD00000001é".encode(),  # UTF-8
    b"LNEVBAD 000000001",  # a space inside
    b"LNEVBAD000000001\x00",  # 16 characters, padded
]


def _count_offsets(frame: Frame, types: set[int]) -> list[int]:
    """Frame offsets of the count bytes of ``frame``'s blocks of ``types``."""
    out, pos = [], 30
    for rec in frame.blocks:
        raw = encode_block(frame.edition, rec)
        if raw[0] in types:
            out.append(pos + 1)
        pos += len(raw)
    return out


def _bad_messages(now_ms: int) -> tuple[list[Message], Counter[str]]:
    """Frames of vehicles outside the fleet: each with a bad ID or a count one too large."""
    out: list[Message] = []
    reasons: Counter[str] = Counter()
    rng = random.Random(9)
    for i in range(2 * len(BAD_IDS)):
        edition = 2016 if i % 2 else 2025
        v = SimVehicle(f"LNEVBAD{i:010d}", rng, edition)
        v.step(10.0)
        t = now_ms - 60_000 + i * 1000
        frame = v.frame(t)
        raw = bytearray(encode_frame(frame))
        if i < len(BAD_IDS):
            raw[4:21] = BAD_IDS[i]
            want = "bad_identity"
        else:
            # motors (0x02), or the cell voltages (2016 0x08 / 2025 0x07): one entry too many
            types = {0x02} if i % 3 else {0x08 if edition == 2016 else 0x07}
            at = _count_offsets(frame, types)[0]
            raw[at] += 1
            want = "count_mismatch"
        value = reseal(raw)
        with pytest.raises(FrameError) as err:  # the test's own premise
            decode_rows(value)
        assert err.value.reason == want
        reasons[want] += 1
        out.append(Message(t, bytes(raw[4:21]), value, "bad"))
    return out, reasons


async def _stored_vins(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT DISTINCT vin FROM {ps.SCHEMA}.vehicle_telemetry")
        rows += await conn.fetch(f"SELECT DISTINCT vin FROM {ps.SCHEMA}.drive_motor_telemetry")
    finally:
        await conn.close()
    return {r["vin"] for r in rows}


async def test_bad_identities_and_miscounts_are_dead_lettered(env: PipelineEnv) -> None:
    now_ms = time.time_ns() // 1_000_000
    fleet = FleetOptions(
        vehicles=12, minutes=2, bad_ratio=0.0, runaway=False, end_ms=now_ms, vin_prefix="LNEVOK"
    )
    good = list(fleet_messages(fleet))
    bad, reasons = _bad_messages(now_ms)
    # Interleaved: every bad frame sits between good frames of the same batch.
    step = max(1, len(good) // (len(bad) + 1))
    messages: list[Message] = []
    for k, m in enumerate(good):
        messages.append(m)
        if k % step == step - 1 and bad:
            messages.append(bad.pop())
    messages += bad
    expected = ps.Expected.of(messages)
    assert expected.bad == reasons and sum(reasons.values()) == 2 * len(BAD_IDS)

    async with ps.serving(env, "bad-identity") as svc:
        sent = await ps.produce_and_store(env, messages)
        assert sent.frames == len(messages)

        assert await ps.stored_rows(env.dsn) == expected.rows  # every good frame, once
        vins = await _stored_vins(env.dsn)
        assert vins and all(v.startswith("LNEVOK") and len(v) == 17 for v in vins), vins

        dead = await ps.read_topic(env.kafka, env.dlq, expect=sum(reasons.values()))
        got = Counter((ps.header(r.headers, "error.reason") or b"").decode() for r in dead)
        assert got == reasons
        sent_bad = {m.value for m in messages if m.kind == "bad"}
        assert {r.value for r in dead} == sent_bad  # the original bytes, untouched
        for r in dead:
            detail = (ps.header(r.headers, "error.detail") or b"").decode()
            assert ("unique ID byte" in detail) or ("line up after" in detail), detail
        for reason, n in reasons.items():
            assert svc.metric("nev_ingest_frames_dead_lettered_total", reason=reason) == n
