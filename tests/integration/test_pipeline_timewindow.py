"""Frame times outside the stored window, through the real service on plain PostgreSQL: device
clocks of 2000 and 2099 and a 2019 capture are dead-lettered (``time_out_of_window``, with the
window in the headers) before the database; in-retention frames older than the pre-made
partitions are stored (partitions made on demand); the good frames around them are stored once,
and no batch is bisected."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from devtools.sim.fleet import FleetOptions, Message, SimVehicle, fleet_messages
from ingest.decoders import encode_frame
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def _frame(vin: str, t_ms: int, seed: int) -> Message:
    v = SimVehicle(vin, random.Random(seed), 2016 if seed % 2 else 2025)
    v.step(10.0)
    return Message(t_ms, vin.encode(), encode_frame(v.frame(t_ms)), "realtime")


def _ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, sec, tzinfo=UTC).timestamp() * 1000)


async def test_out_of_window_times_are_dead_lettered_and_old_in_window_ones_stored(
    env: PipelineEnv,
) -> None:
    now_ms = time.time_ns() // 1_000_000_000 * 1000  # frame times have whole seconds
    good = list(
        fleet_messages(
            FleetOptions(vehicles=40, minutes=2, bad_ratio=0, gap_ratio=0, runaway=False,
                         end_ms=now_ms)
        )
    )  # fmt: skip
    outside = [
        _frame("LNEVCLOCK20000001", _ms(2000, 1, 1, 0, 0, 5), 1),  # a reset clock
        _frame("LNEVCLOCK20990001", _ms(2099, 6, 1), 2),  # a clock far ahead
        _frame("LNEVCAPTURE201901", _ms(2019, 3, 14, 8, 30), 3),  # past the 3-year retention
    ]
    inside = [
        _frame("LNEVREISSUE000040", now_ms - 40 * DAY_MS, 4),  # older than the pre-made days
        _frame("LNEVREISSUE000400", now_ms - 400 * DAY_MS, 5),
        _frame("LNEVREISSUE000401", now_ms - 400 * DAY_MS + 60_000, 6),  # the same slot
    ]
    messages = list(good)
    step = len(good) // (len(outside) + len(inside) + 1)
    for k, m in enumerate([*outside, *inside]):  # interleaved with the good frames
        messages.insert((k + 1) * step + k, m)
    expected = ps.Expected.of(messages)
    for m in outside:
        del expected.rows[(m.key.decode(), m.t_ms)]
    assert all((m.key.decode(), m.t_ms) in expected.rows for m in inside)

    async with ps.serving(env, "window", workers=2, ready_timeout_s=90) as svc:
        await ps.produce_and_store(env, messages, timeout_s=120)

        assert await ps.stored_rows(env.dsn) == expected.rows  # good + in-window old, once each
        dead = await ps.read_topic(env.kafka, env.dlq, expect=len(outside))
        assert Counter(ps.header(r.headers, "error.reason") for r in dead) == {
            b"time_out_of_window": 3
        }
        by_key = {r.key: r for r in dead}
        assert set(by_key) == {m.key for m in outside}
        for m in outside:
            h = by_key[m.key].headers
            assert by_key[m.key].value == m.value  # the record as it came
            assert int(ps.header(h, "error.frame_time") or b"0") == m.t_ms
            received = int(ps.header(h, "received_at") or b"0")
            start = int(ps.header(h, "error.window_start") or b"0")
            end = int(ps.header(h, "error.window_end") or b"0")
            assert end == received + 600_000  # pipeline.frame_max_future_s default
            assert now_ms - 1095 * DAY_MS - 60_000 <= start <= now_ms - 1095 * DAY_MS + 600_000
            assert not start <= m.t_ms <= end
            assert ps.header(h, "error.stage") == b"decode"

        # decided before the database: no batch split, nothing refused by it
        assert svc.metric("nev_ingest_bisect_loads_total") == 0
        assert svc.metric("nev_ingest_frames_dead_lettered_total", reason="db_rejected") == 0
        assert svc.metric("nev_ingest_frames_dead_lettered_total", reason="time_out_of_window") == 3
        assert svc.metric("nev_ingest_partitions_created_total") > 0
