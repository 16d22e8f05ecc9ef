"""Fuzz the running service, not only its decoders (issue 16): malformed Kafka records of every
kind of devtools.sim.malformed (empty and null values, a value just under the broker's 8 MiB,
no key, an overlong key, too many or too large headers, T/CEC pushes without or with garbage
headers, charger and pack frames on the vehicle topic, vehicle frames on the other topics,
random bytes, mutated real frames, a frame over a row limit) interleaved with good frames, some
of them with junk in their optional headers (a header without a value, a ``received_at`` that is
no number), on all four raw topics of one ``nev-ingest run``.

Nothing crashes (no worker restart, exit 0), every bad record is dead-lettered once per offset
with one of the reasons it may get, and every good frame is stored exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from devtools.sim.malformed import KINDS, Headers, bad_records, noisy
from ingest.pipeline import wire
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

# The dev broker's message.max.bytes is 8 MiB (devtools/devstack/kafka.py): a value just under
# it, with room for the record's framing and headers.
HUGE = 8 * 1024 * 1024 - 4096


async def test_malformed_records_among_good_frames(env: PipelineEnv) -> None:
    now = time.time_ns() // 1_000_000
    good = recent_fleet(40, 3)
    expected = ps.Expected.of(good)
    assert not expected.bad  # the fleet's frames are all good: every dead letter is a bad one
    bad = bad_records(good, 3 * len(KINDS), now_ms=now, seed=16, huge_bytes=HUGE)
    topic_of = {"vehicle": env.topic, "charger": env.charger, "battery": env.battery}
    topic_of["tcec"] = env.tcec
    rng = random.Random(16)
    step = max(1, len(good) // len(bad))

    async with ps.serving(env, "fuzz") as svc:
        producer = AIOKafkaProducer(
            bootstrap_servers=env.kafka,
            acks="all",
            enable_idempotence=True,
            max_request_size=HUGE + 64 * 1024,
        )
        await producer.start()
        try:

            async def send(
                role: str, key: bytes | None, value: bytes | None, h: Headers
            ) -> tuple[str, asyncio.Future[Any]]:
                topic = topic_of[role]
                return topic, await producer.send(topic, value, key=key, headers=list(h))

            bad_sent: list[tuple[Any, str, asyncio.Future[Any]]] = []
            for i, m in enumerate(good):
                h = noisy(m, rng) if i % 4 == 0 else ((wire.RECEIVED_AT, str(now).encode()),)
                await send(m.topic, m.key, m.value, h)
                if i % step == 0 and len(bad_sent) < len(bad):
                    b = bad[len(bad_sent)]
                    # a header without a value (Kafka allows one) on the bad records too
                    h = (*b.headers, ("gateway", None)) if i % 2 else b.headers
                    bad_sent.append((b, *(await send(b.role, b.key, b.value, h))))
            for b in bad[len(bad_sent) :]:
                bad_sent.append((b, *(await send(b.role, b.key, b.value, b.headers))))
            coords = {}
            for b, topic, fut in bad_sent:
                meta = await fut
                coords[(topic, meta.partition, meta.offset)] = b
            await producer.flush()
        finally:
            await producer.stop()

        await ps.until(
            lambda: ps.caught_up(env, env.raw_topics), timeout_s=180, what="every offset stored"
        )
        assert await ps.stored_rows(env.dsn) == expected.rows  # every good frame, once
        dead = await ps.read_topic(env.kafka, env.dlq, expect=len(bad), timeout_s=60)
        got: dict[tuple[str, int, int], set[str]] = {}
        for letter in dead:
            src = (
                (ps.header(letter.headers, wire.SOURCE_TOPIC) or b"").decode(),
                int(ps.header(letter.headers, wire.SOURCE_PARTITION) or b"-1"),
                int(ps.header(letter.headers, wire.SOURCE_OFFSET) or b"-1"),
            )
            got.setdefault(src, set()).add(
                (ps.header(letter.headers, wire.ERROR_REASON) or b"").decode()
            )
        assert set(got) == set(coords)  # every bad record, and nothing else
        wrong = {
            (coords[src].kind, *src): sorted(reasons)
            for src, reasons in got.items()
            if len(reasons) != 1 or not reasons <= coords[src].reasons
        }
        assert wrong == {}
        assert svc.metric("nev_ingest_worker_restarts_total") == 0
        assert svc.metric("nev_ingest_frames_dead_lettered_total") >= len(bad)
    # The service's own errors (aiokafka logs a coordinator not yet available at start).
    errors = [
        r
        for r in svc.logs()
        if r.get("level") in ("error", "critical") and str(r.get("logger")).startswith("ingest")
    ]
    assert errors == [], svc.tail()
