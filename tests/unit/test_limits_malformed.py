"""Every kind of malformed record of the pipeline fuzz (devtools.sim.malformed) through the
batch builder with the pipeline's real decoders, without a broker: each one is dead-lettered
with one of the reasons it declares, nothing raises, and the good frames around them (junk in
their optional headers included) are all kept. The running-service version of this is
tests/integration/test_pipeline_fuzz.py."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from devtools.sim.fleet import GOOD_KINDS, FleetOptions, fleet_messages
from devtools.sim.malformed import KINDS, Headers, bad_records, noisy
from ingest.pipeline import wire
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.process import DECODERS
from ingest.pipeline.timewindow import TimeWindow
from tests.unit.kafka_records import TP, Rec

pytestmark = pytest.mark.unit

MAX_RECORD = 64 * 1024


def test_every_malformed_record_is_dead_lettered_with_its_reason() -> None:
    now = time.time_ns() // 1_000_000
    options = FleetOptions(vehicles=20, minutes=2, end_ms=now, bad_ratio=0.0)
    good = list(fleet_messages(options))
    assert {m.kind for m in good} <= GOOD_KINDS
    bad = bad_records(good, 40 * len(KINDS), now_ms=now, seed=3, huge_bytes=MAX_RECORD + 1)
    assert {b.kind for b in bad} == set(KINDS)
    window = TimeWindow(max_age_ms=None, max_future_ms=600_000)
    builder = BatchBuilder(
        {role: DECODERS[role] for role in DECODERS}, window=window, max_value_bytes=MAX_RECORD
    )
    rng = random.Random(5)
    offsets: Counter[str] = Counter()
    expected: dict[tuple[str, int], frozenset[str]] = {}
    kept_good = 0

    def feed(topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        at = offsets[topic]
        offsets[topic] += 1
        one = Rec(topic, 0, at, value, key=key, timestamp=now, headers=list(headers))  # type: ignore[arg-type]
        builder.add(TP(topic, 0), [one], None)

    # Interleaved: a bad record after every good frame, until both run out.
    for i in range(max(len(good), len(bad))):
        if i < len(good):
            m = good[i]
            headers = noisy(m, rng) if i % 3 == 0 else ()
            feed(m.topic, m.key, m.value, headers)
            kept_good += m.kind in GOOD_KINDS
        if i < len(bad):
            b = bad[i]
            expected[(b.role, offsets[b.role])] = b.reasons
            # A header without a value on a bad record too (Kafka allows one): its dead letter
            # copies it, and counting the letter's bytes must not trip on it.
            feed(b.role, b.key, b.value, (*b.headers, ("gateway", None)) if i % 2 else b.headers)
    batch = builder.take()
    got = {}
    for d in batch.dead:
        src = (
            (wire.header(d.headers, wire.SOURCE_TOPIC) or b"").decode(),
            int(wire.header(d.headers, wire.SOURCE_OFFSET) or b"-1"),
        )
        got[src] = (wire.header(d.headers, wire.ERROR_REASON) or b"").decode()
    wrong = {src: (got.get(src), sorted(r)) for src, r in expected.items() if got.get(src) not in r}
    assert wrong == {}
    assert set(got) == set(expected)  # no good frame dead-lettered
    assert len(batch.frames) == kept_good
