"""Charger-profile and pack-profile frames whose data unit cannot be read (encrypted, marked
abnormal / invalid, or a reserved encryption byte) reach the dead-letter topic as
``encrypted_unsupported``, intact, through the running service, and store no row; plain frames
beside them are stored and a heartbeat with an empty unit is kept. Before, such frames were
counted as decoded and their offsets committed with nothing written: lost."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from devtools.sim.envelope import frame, reseal
from ingest.pipeline import wire
from tests.integration import kinds_support as ks
from tests.integration import pipeline_support as ps
from tests.integration.kinds_support import Out
from tests.integration.pipeline_support import PipelineEnv
from tests.kinds_traffic import (
    OPERATOR,
    charger_realtime,
    connector,
    pack_code,
    pack_realtime,
    received,
)

pytestmark = pytest.mark.integration

UNREADABLE = (0x03, 0xFE, 0xFF, 0x07)  # AES-128, abnormal, invalid, reserved
C1, PACK = connector(1), pack_code(1)


def _records(topic: str, key: str, plain: bytes, t0: int) -> tuple[list[Out], list[Out]]:
    """(kept, unreadable): the plain frame and a heartbeat, and the plain frame marked."""
    kept = [
        Out(topic, key.encode(), plain, received(t0)),
        Out(
            topic,
            key.encode(),
            frame(2016, 0x07, plain[4:21].decode(), b"", encryption=0xFE),
            received(t0),
        ),
    ]
    bad = []
    for byte in UNREADABLE:
        marked = bytearray(plain)
        marked[21] = byte
        bad.append(Out(topic, key.encode(), reseal(marked), received(t0)))
    return kept, bad


async def test_unreadable_charger_and_pack_frames_are_dead_lettered(env: PipelineEnv) -> None:
    t0 = (time.time_ns() // 10**9 - 10 * 60) * 1000
    charger_kept, charger_bad = _records(
        env.charger, f"{OPERATOR}:{C1}", charger_realtime(t0, C1), t0
    )
    pack_kept, pack_bad = _records(env.battery, PACK, pack_realtime(t0, PACK), t0)
    kept, bad = charger_kept + pack_kept, charger_bad + pack_bad
    want = ks.expected(env, kept)
    assert not want.bad and want.rows["charger_telemetry"] and want.rows["pack_telemetry"]

    async with ps.serving(env, "unreadable") as svc:
        assert await ks.produce_records(env.kafka, [*bad, *kept]) == len(bad) + len(kept)
        await ps.until(
            lambda: ps.caught_up(env, (env.charger, env.battery)),
            timeout_s=90,
            what="every offset stored",
        )
        assert await ks.stored(env.dsn) == want.rows  # the plain frames' rows, nothing more

        dead = await ps.read_topic(env.kafka, env.dlq, expect=len(bad))
        got = Counter(
            (
                (ps.header(r.headers, wire.SOURCE_TOPIC) or b"").decode(),
                (ps.header(r.headers, wire.ERROR_REASON) or b"").decode(),
            )
            for r in dead
        )
        assert got == {
            (env.charger, "encrypted_unsupported"): len(UNREADABLE),
            (env.battery, "encrypted_unsupported"): len(UNREADABLE),
        }
        assert {r.value for r in dead} == {o.value for o in bad}  # intact, for a replay
        dead_metric = "nev_ingest_frames_dead_lettered_total"
        for kind in ("charger", "battery"):
            n = svc.metric(dead_metric, kind=kind, reason="encrypted_unsupported")
            assert n == len(UNREADABLE)
