"""A batch's entities, walked once for both the moved lookup (ingest/pipeline/moved.py,
before the evaluation) and the placement stamp (StorageSink._placements, after it):

* the batch's records are read once however many times the two steps ask, a retried write
  included (the walk used to be made by each step, on every frame, in Python);
* the lookup takes an entity's first (topic, partition), across the topics of its kind, and
  only the frames the engine evaluates; the stamp takes its last partition per topic, frames
  without a time included, and leaves out what is stamped there already;
* a batch that lost partitions is walked again, without them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts import RuleEngine, RuleSet
from contract.charger import ChargerRows, ConnectorStatusRow
from contract.rows import FrameRows
from devtools.sim.bench_frames import realtime_frames
from ingest.decoders.fast import decode_rows
from ingest.pipeline.batch import Batch
from ingest.pipeline.entities import entities_of, unstamped
from ingest.pipeline.moved import unknown

pytestmark = pytest.mark.unit

VEHICLES = "nev.vehicle.raw"
CHARGERS = "nev.charger.raw"
TCEC = "nev.tcec.raw"
KINDS = {VEHICLES: "vehicle", CHARGERS: "charger", TCEC: "charger"}


@dataclass
class Rec:
    topic: str
    partition: int


class Walked(list[Any]):
    """A batch's records that count how often they are read from the start."""

    walks = 0

    def __iter__(self) -> Any:
        self.walks += 1
        return super().__iter__()


def vehicle_frames(n: int) -> list[FrameRows]:
    out = []
    for _, value in realtime_frames(n, 1, start_ms=1_700_000_000_000):
        rows = decode_rows(value)
        assert isinstance(rows, FrameRows) and rows.vehicle is not None
        out.append(rows)
    return out


def batch_of(pairs: list[tuple[Rec, Any]]) -> Batch:
    frames = [f for _, f in pairs]
    return Batch(
        0,
        frames=frames,
        records=Walked(rec for rec, _ in pairs),
        received_ms=[0] * len(frames),
        record_bytes=[0] * len(frames),
        decoded=Counter(rec.topic for rec, _ in pairs),  # as the builder counts them
    )


def engine_knowing(*vins: str) -> RuleEngine:
    engine = RuleEngine(RuleSet.default())
    known = {f.vin: f for f in vehicle_frames(8)}
    engine.evaluate([known[v] for v in vins], partition=0, topic=VEHICLES)
    assert all(v in engine for v in vins)
    return engine


def test_the_records_are_read_once_for_the_lookup_and_the_stamps_a_retry_included() -> None:
    frames = vehicle_frames(4)
    batch = batch_of([(Rec(VEHICLES, i % 2), f) for i, f in enumerate(frames)])
    engines = {"vehicle": RuleEngine(RuleSet.default())}
    first = unknown(batch, engines, KINDS)
    assert len(first) == 4
    assert unknown(batch, engines, KINDS) == first  # a retried write's lookup
    for _ in range(2):  # the stamps of the write and of its retry
        stamps = unstamped(entities_of(batch, KINDS), {})
        assert stamps == {(VEHICLES, "vehicle"): {f.vin: i % 2 for i, f in enumerate(frames)}}
    assert batch.records.walks == 1  # type: ignore[attr-defined]


def test_the_lookup_takes_the_first_partition_and_the_stamp_the_last() -> None:
    a, b, c, d, e = vehicle_frames(5)
    untimed = FrameRows(edition=2016, command=2, vin=c.vin, ts_ms=None, vehicle=c.vehicle)
    heartbeat = FrameRows(edition=2016, command=7, vin=d.vin, ts_ms=d.ts_ms)
    batch = batch_of(
        [
            (Rec(VEHICLES, 1), a),
            (Rec(VEHICLES, 1), b),
            (Rec(VEHICLES, 2), a),  # a moved on within the batch: last on 2
            (Rec(VEHICLES, 2), untimed),  # c: nothing to evaluate, but latest_state has it
            (Rec(VEHICLES, 2), heartbeat),  # d: no vehicle row: neither
            (Rec(VEHICLES, 3), e),
        ]
    )
    engines = {"vehicle": engine_knowing(b.vin)}
    assert unknown(batch, engines, KINDS) == {
        ("vehicle", a.vin): (VEHICLES, 1),
        ("vehicle", e.vin): (VEHICLES, 3),
    }
    found = entities_of(batch, KINDS)
    assert unstamped(found, {}) == {(VEHICLES, "vehicle"): {a.vin: 2, b.vin: 1, c.vin: 2, e.vin: 3}}
    # Stamped there already: nothing to stamp again (e is stamped on another partition).
    placed = {VEHICLES: {b.vin: 1, c.vin: 2, e.vin: 2}}
    assert unstamped(found, placed) == {(VEHICLES, "vehicle"): {a.vin: 2, e.vin: 3}}
    placed[VEHICLES].update({a.vin: 1, e.vin: 3})
    assert unstamped(found, placed) == {(VEHICLES, "vehicle"): {a.vin: 2}}
    # a's frames come from 2 now, and it is stamped there: its earlier frame on 1 is no
    # placement (it used to be stamped on 1, until a later batch stamped 2 again).
    placed[VEHICLES][a.vin] = 2
    assert unstamped(found, placed) == {}


def test_a_connector_s_first_frame_is_taken_across_its_kind_s_topics() -> None:
    ts = datetime(2026, 12, 7, 10, tzinfo=UTC)

    def charger(*connectors: str) -> ChargerRows:
        rows = ChargerRows(operator_id="MA1234567", ts_ms=int(ts.timestamp() * 1000))
        for cid in connectors:
            rows.statuses.append(ConnectorStatusRow("MA1234567", cid, ts, 3, None, None, "x"))
        return rows

    batch = batch_of(
        [
            (Rec(CHARGERS, 4), charger("01")),
            (Rec(TCEC, 5), charger("02", "01")),
            (Rec(CHARGERS, 6), charger("02")),
            (Rec(TCEC, 7), ChargerRows(operator_id="MA1234567")),  # no connector: no entity
        ]
    )
    engines = {"charger": RuleEngine(RuleSet.default(), entity_kind="charger")}
    assert unknown(batch, engines, KINDS) == {
        ("charger", "MA1234567:01"): (CHARGERS, 4),
        ("charger", "MA1234567:02"): (TCEC, 5),
    }
    assert unstamped(entities_of(batch, KINDS), {}) == {
        (CHARGERS, "charger"): {"MA1234567:01": 4, "MA1234567:02": 6},
        (TCEC, "charger"): {"MA1234567:02": 5, "MA1234567:01": 5},
    }


def test_a_batch_that_lost_partitions_is_walked_again_without_them() -> None:
    a, b = vehicle_frames(2)
    batch = batch_of([(Rec(VEHICLES, 1), a), (Rec(VEHICLES, 2), b)])
    batch.next = {(VEHICLES, 1): 10, (VEHICLES, 2): 20}
    assert unstamped(entities_of(batch, KINDS), {}) == {(VEHICLES, "vehicle"): {a.vin: 1, b.vin: 2}}
    batch.drop_partitions([(VEHICLES, 2)])
    assert unstamped(entities_of(batch, KINDS), {}) == {(VEHICLES, "vehicle"): {a.vin: 1}}
