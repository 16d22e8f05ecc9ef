"""``pipeline.max_in_flight_bytes``: a worker whose writes stall holds at most that many bytes of
records (plus one fetch), however few frames they are: it stops fetching, pauses its
partitions, and once the database writes again stores every good frame and dead-letters every
bad record once. Without the bound, 60 records of 60 KB are nothing to a 50,000-frame bound;
at kafka.max_record_bytes (512 KiB) 50,000 records would be 25 GiB.

The stall is a lock held by the test on the offsets table, as in test_pipeline_stall.py."""

from __future__ import annotations

import asyncpg
import pytest

from devtools.sim.fleet import Message
from ingest.decoders.errors import BAD_START
from ingest.pipeline import wire
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

BOUND = 2**20  # pipeline.max_in_flight_bytes: its minimum
FETCH = 256 * 1024  # kafka.max_partition_fetch_bytes (and fetch_max_bytes)
JUNK = 60_000  # bytes of one junk record (no frame start: a dead letter holding it whole)
JUNKS = 60  # 3.6 MB of them: over three times the bound


async def test_a_stalled_worker_holds_the_byte_bound_then_loses_nothing(env: PipelineEnv) -> None:
    good = recent_fleet(40, 3)
    expected = ps.Expected.of(good)
    junk = [Message(0, good[i].key, bytes([0x41 + i % 26]) * JUNK, "garbage") for i in range(JUNKS)]
    # Junk among the good frames, on the same keys (so the same partitions).
    step = len(good) // JUNKS
    messages = [m for i, j in enumerate(junk) for m in (*good[i * step : (i + 1) * step], j)]
    messages += good[JUNKS * step :]

    async with ps.serving(
        env,
        "bytes",
        NEV_PIPELINE_MAX_IN_FLIGHT_BYTES=str(BOUND),
        NEV_KAFKA_MAX_RECORD_BYTES=str(128 * 1024),
        NEV_KAFKA_MAX_PARTITION_FETCH_BYTES=str(FETCH),
        NEV_KAFKA_FETCH_MAX_BYTES=str(FETCH),
    ) as svc:
        lock = await asyncpg.connect(env.dsn)
        try:
            tx = lock.transaction()
            await tx.start()
            await lock.execute(f"LOCK TABLE {ps.SCHEMA}.consumer_offsets IN EXCLUSIVE MODE")
            await ps.produce(env.kafka, env.topic, messages)
            await ps.until_write_waits_on_lock(lock)

            # Full for pause_after_s (1 s) with the writes stalled: every partition pauses.
            async def paused() -> bool:
                return svc.metric("nev_ingest_paused_partitions") == env.raw_partitions

            await ps.until(paused, timeout_s=60, what="the byte bound to pause the partitions")
            held = svc.metric("nev_ingest_in_flight_bytes")
            frames = svc.metric("nev_ingest_in_flight_frames")
            # At the bound (a pause needs it reached), over it by one getmany at most: what
            # aiokafka holds fetched, one fetch per partition (a record batch beyond a fetch's
            # bytes, and the letters' headers, are the slack).
            assert BOUND <= held <= BOUND + env.raw_partitions * FETCH + JUNK, held
            assert frames < len(messages), "the worker fetched everything: no bound"
            await tx.rollback()
        finally:
            await lock.close()

        await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="every offset stored")
        assert await ps.stored_rows(env.dsn) == expected.rows  # nothing lost
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0  # nothing twice

        async def released() -> bool:
            return svc.metric("nev_ingest_in_flight_bytes") == 0

        # Every byte taken is given back (an accounting that leaked would pause for good).
        await ps.until(released, timeout_s=30, what="the in-flight bytes to fall to 0")
        assert svc.metric("nev_ingest_in_flight_frames") == 0

    letters = await ps.read_topic(env.kafka, env.dlq, expect=JUNKS)
    reasons = [ps.header(r.headers, wire.ERROR_REASON) for r in letters]
    assert reasons == [BAD_START.encode()] * JUNKS
    assert sorted(r.value for r in letters) == sorted(j.value for j in junk)


async def test_heavy_records_flow_through_the_byte_bound_without_a_pause(
    env: PipelineEnv,
) -> None:
    # The open batch alone can reach the byte bound (here 20 records of 60 KB), which the
    # frame bound never did: it must be written at once, not after its linger while the
    # writer idles, which then looked like slow writes and paused every partition.
    junk = [Message(0, b"K%03d" % i, bytes([0x41 + i % 26]) * JUNK, "garbage") for i in range(200)]
    async with ps.serving(env, "heavy", NEV_PIPELINE_MAX_IN_FLIGHT_BYTES=str(BOUND)) as svc:
        await ps.produce(env.kafka, env.topic, junk)
        await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="every offset stored")
        pauses = [r for r in svc.logs() if str(r.get("msg", "")).startswith("pausing")]
        assert pauses == [], pauses
        assert svc.metric("nev_ingest_frames_dead_lettered_total") == len(junk)
