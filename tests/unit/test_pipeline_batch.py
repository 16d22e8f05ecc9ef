"""Batch building: decode on add, dead letters with reasons, per-partition offset ranges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from contract.kinds import Decoded
from contract.rows import FrameRows
from ingest.decoders.errors import BAD_CHECKSUM, FrameError
from ingest.pipeline import wire
from ingest.pipeline.backpressure import Held
from ingest.pipeline.batch import BatchBuilder, Batched, lane_of
from tests.unit.kafka_records import TP, Rec

pytestmark = pytest.mark.unit


def _decode(value: bytes, received_ms: int) -> FrameRows:
    if value == b"bad":
        raise FrameError(BAD_CHECKSUM, len(value) - 1, "BCC 0x01, computed 0x02")
    if value == b"bug":
        raise IndexError("decoder bug")
    return FrameRows(edition=2016, command=2, vin=value.decode(), ts_ms=received_ms)


def _vin(frame: Decoded) -> str:
    assert isinstance(frame, FrameRows)
    return frame.vin


def test_decodes_and_dead_letters_with_reasons() -> None:
    vehicle, charger = "nev.vehicle.raw", "nev.charger.raw"
    builder = BatchBuilder({vehicle: _decode})
    tp0, tp1, tpc = TP(vehicle, 0), TP(vehicle, 1), TP(charger, 0)
    hdr = [(wire.RECEIVED_AT, b"1700000000123"), (wire.GATEWAY, b"gw-1")]
    builder.add(
        tp0,
        [
            Rec(vehicle, 0, 10, b"A", headers=hdr),
            Rec(vehicle, 0, 11, b"bad", headers=hdr),
            Rec(vehicle, 0, 12, None),
            Rec(vehicle, 0, 13, b"bug"),
        ],
        start=10,
    )
    builder.add(tp1, [Rec(vehicle, 1, 5, b"B")], start=None)
    builder.add(tpc, [Rec(charger, 0, 0, b"C")], start=0)
    builder.add(tp0, [Rec(vehicle, 0, 15, b"D")], start=999)  # start used only the first time
    batch = builder.take()
    assert builder.size == 0
    assert batch.size == 7
    assert batch.consumed == {vehicle: 6, charger: 1}
    assert batch.decoded == {vehicle: 3}
    assert [_vin(f) for f in batch.frames] == ["A", "B", "D"]
    assert batch.received_ms[0] == 1_700_000_000_123  # from the header
    assert batch.received_ms[1] == 1_700_000_000_000  # no header: the Kafka timestamp
    assert batch.start == {tp0: 10, tp1: None, tpc: 0}
    assert batch.next == {tp0: 16, tp1: 6, tpc: 1}
    assert batch.dead_reasons == {
        (vehicle, BAD_CHECKSUM): 1,
        (vehicle, wire.EMPTY_VALUE): 1,
        (vehicle, wire.DECODER_ERROR): 1,
        (charger, wire.NO_DECODER): 1,
    }
    bad = batch.dead[0]
    assert bad.value == b"bad" and bad.key == b"VIN00000000000001"
    assert bad.headers[:2] == hdr  # original headers first, untouched
    assert wire.header(bad.headers, wire.ERROR_REASON) == b"bad_checksum"
    assert b"BCC" in (wire.header(bad.headers, wire.ERROR_DETAIL) or b"")
    assert wire.header(bad.headers, wire.SOURCE_TOPIC) == vehicle.encode()
    assert wire.header(bad.headers, wire.SOURCE_PARTITION) == b"0"
    assert wire.header(bad.headers, wire.SOURCE_OFFSET) == b"11"


def test_drop_partitions_removes_everything_of_them() -> None:
    topic = "nev.vehicle.raw"
    builder = BatchBuilder({topic: _decode})
    builder.add(TP(topic, 0), [Rec(topic, 0, 1, b"A"), Rec(topic, 0, 2, b"bad")], start=1)
    builder.add(TP(topic, 1), [Rec(topic, 1, 7, b"B"), Rec(topic, 1, 8, b"bad")], start=7)
    batch = builder.take()
    assert batch.drop_partitions([TP(topic, 0)]).frames == 2
    assert [_vin(f) for f in batch.frames] == ["B"]
    assert batch.next == {TP(topic, 1): 9}
    assert batch.dead_reasons == {(topic, BAD_CHECKSUM): 1}
    assert batch.size == 2
    assert batch.consumed == {topic: 2} and batch.decoded == {topic: 1}
    assert batch.drop_partitions([TP(topic, 5)]) == Held(0, 0)


def _bytes(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, Any]]) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v or b"") for k, v in headers)


def test_held_bytes_are_given_back_exactly_by_parts_and_drops() -> None:
    # The byte bound (pipeline.max_in_flight_bytes) frees what a batch, its lane parts or a
    # dropped partition give back: each must be exactly what ``add`` took, or the count
    # drifts and the worker stays paused. Frames count their value; dead letters their
    # letter (a cut one only its cut: 100 KB over the size limit holds 4 KiB, not 100 KB).
    # Keys and headers count too, a header without a value (Kafka allows one) as its name.
    topic = "nev.vehicle.raw"
    builder = BatchBuilder({topic: _decode}, max_value_bytes=50_000)
    took = Held(0, 0)
    hollow: list[tuple[str, Any]] = [("gateway", None)]
    for p in range(4):
        recs = [
            Rec(topic, p, 0, f"V{p}".encode() * (p + 1), key=b"K", headers=hollow),
            Rec(topic, p, 1, b"bad", headers=[("h", b"x" * 100), *hollow]),
            Rec(topic, p, 2, b"#" * 100_000, headers=hollow),  # too_large
            Rec(topic, p, 3, None, headers=hollow),  # empty
        ]
        held = builder.add(TP(topic, p), recs, start=0)
        assert held.frames == 4
        took = Held(took.frames + held.frames, took.bytes + held.bytes)
    batch = builder.take()
    frames = sum(_bytes(r.key, r.value, r.headers) for r in batch.records)
    letters = sum(_bytes(d.key, d.value, d.headers) for d in batch.dead)
    assert batch.held == took == Held(16, frames + letters)
    assert frames == 2 + 4 + 6 + 8 + 4 * (1 + len("gateway"))
    assert took.bytes < 100_000  # the too_large values are not held

    parts = batch.split(2)
    assert len(parts) == 2
    assert sum(part.held.bytes for _, part in parts) == batch.held.bytes
    assert sum(part.held.frames for _, part in parts) == batch.held.frames
    _, part = parts[0]
    before = part.held
    gone = part.drop_partitions([next(iter(part.next))])
    assert gone.frames == 4 and gone.bytes > 0
    assert Held(part.held.frames + gone.frames, part.held.bytes + gone.bytes) == before


def test_received_at_header_validation() -> None:
    assert wire.received_at_ms([(wire.RECEIVED_AT, b"1700000000999")], 5) == 1700000000999
    assert wire.received_at_ms([(wire.RECEIVED_AT, b"1700000000")], 5) == 5  # seconds
    assert wire.received_at_ms([(wire.RECEIVED_AT, b"soon")], 5) == 5
    assert wire.received_at_ms([], 5) == 5


def test_split_by_lane_keeps_each_partition_whole_and_in_order() -> None:
    topic = "nev.vehicle.raw"
    builder = BatchBuilder({topic: _decode})
    for p in range(6):
        recs = [Rec(topic, p, 10 * p + i, f"V{p}-{i}".encode()) for i in range(3)]
        recs.append(Rec(topic, p, 10 * p + 3, b"bad"))
        builder.add(TP(topic, p), recs, start=10 * p)
    batch = builder.take()
    parts = batch.split(2)
    assert [lane for lane, _ in parts] == [0, 1]
    assert sum(part.size for _, part in parts) == batch.size == 24
    seen: set[int] = set()
    for lane, part in parts:
        tps = set(part.next)
        assert all(lane_of(tp.topic, tp.partition, 2) == lane for tp in tps)
        assert not seen & {tp.partition for tp in tps}
        seen |= {tp.partition for tp in tps}
        for tp in tps:
            assert part.start[tp] == batch.start[tp] and part.next[tp] == batch.next[tp]
            vins = [
                _vin(f)
                for f, r in zip(part.frames, part.records, strict=True)
                if r.partition == tp.partition
            ]
            assert vins == [f"V{tp.partition}-{i}" for i in range(3)]  # order kept
        assert part.dead_reasons == {(topic, BAD_CHECKSUM): len(tps)}
        assert part.decoded == {topic: 3 * len(tps)}
    assert seen == set(range(6))
    assert batch.split(1) == [(0, batch)]


def test_split_by_shard_gives_each_part_one_shard_and_its_own_lanes() -> None:
    # Partition p belongs to shard p % 2; each shard has lanes of its own (2 per shard here),
    # so a part's transaction is one shard's and a down shard holds up only its lanes.
    topic = "nev.vehicle.raw"
    builder = BatchBuilder({topic: _decode})
    for p in range(6):
        builder.add(TP(topic, p), [Rec(topic, p, 10 * p, f"V{p}-0".encode())], start=10 * p)
    batch = builder.take()
    parts = batch.split(2, shards=2)
    assert sum(part.size for _, part in parts) == batch.size == 6
    for lane, part in parts:
        assert part.shard == lane // 2
        assert {tp.partition % 2 for tp in part.next} == {part.shard}
        assert {r.partition % 2 for r in part.records} == {part.shard}
    assert {part.shard for _, part in parts} == {0, 1}


class _Native:
    """A batch decoder (the form of ``decode_rows_batch``) that records its calls; ``b"bug"``
    makes the whole call raise, as a bug in native code would."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []

    def __call__(
        self, values: Sequence[bytes], received_ms: Sequence[int]
    ) -> list[FrameRows | FrameError]:
        self.calls.append(list(values))
        if b"bug" in values:
            raise SystemError("native decoder bug")
        out: list[FrameRows | FrameError] = []
        for value, ms in zip(values, received_ms, strict=True):
            try:
                out.append(_decode(value, ms))
            except FrameError as exc:
                out.append(exc)
        return out


def test_a_batched_decoder_gets_one_call_per_add_with_the_decodable_values_only() -> None:
    topic = "nev.vehicle.raw"
    native = _Native()
    builder = BatchBuilder({topic: Batched(native)}, max_value_bytes=8)
    records = [
        Rec(topic, 0, 1, b"A"),
        Rec(topic, 0, 2, None),
        Rec(topic, 0, 3, b"bad"),
        Rec(topic, 0, 4, b"X" * 9),  # over max_value_bytes: never reaches the decoder
        Rec(topic, 0, 5, b"B"),
    ]
    builder.add(TP(topic, 0), records, start=1)
    batch = builder.take()
    assert native.calls == [[b"A", b"bad", b"B"]]
    assert [_vin(f) for f in batch.frames] == ["A", "B"]
    assert [r.offset for r in batch.records] == [1, 5]
    # Dead letters in offset order, each with its own reason.
    assert [wire.header(d.headers, wire.SOURCE_OFFSET) for d in batch.dead] == [b"2", b"3", b"4"]
    assert [wire.header(d.headers, wire.ERROR_REASON) for d in batch.dead] == [
        wire.EMPTY_VALUE.encode(),
        BAD_CHECKSUM.encode(),
        wire.TOO_LARGE.encode(),
    ]
    assert b"BCC" in (wire.header(batch.dead[1].headers, wire.ERROR_DETAIL) or b"")
    assert batch.next == {TP(topic, 0): 6} and batch.size == 5
    assert batch.decoded == {topic: 2} and batch.consumed == {topic: 5}


def test_a_failing_batch_call_falls_back_to_one_frame_at_a_time() -> None:
    topic = "nev.vehicle.raw"
    native = _Native()
    builder = BatchBuilder({topic: Batched(native)})
    values = [b"A", b"bug", b"bad", b"B"]
    builder.add(TP(topic, 0), [Rec(topic, 0, i, v) for i, v in enumerate(values)], start=0)
    batch = builder.take()
    # The whole call failed, then each frame alone: only the guilty one is a decoder_error.
    assert native.calls == [values, [b"A"], [b"bug"], [b"bad"], [b"B"]]
    assert [_vin(f) for f in batch.frames] == ["A", "B"]
    assert batch.dead_reasons == {(topic, wire.DECODER_ERROR): 1, (topic, BAD_CHECKSUM): 1}
    guilty = batch.dead[0]
    assert wire.header(guilty.headers, wire.SOURCE_OFFSET) == b"1"
    assert b"native decoder bug" in (wire.header(guilty.headers, wire.ERROR_DETAIL) or b"")
    assert batch.next == {TP(topic, 0): 4}


def test_a_batch_result_of_the_wrong_length_is_not_trusted() -> None:
    topic = "nev.vehicle.raw"

    def short(values: Sequence[bytes], received_ms: Sequence[int]) -> list[FrameRows]:
        return [_decode(v, ms) for v, ms in zip(values, received_ms, strict=True)][:1]

    builder = BatchBuilder({topic: Batched(short)})
    builder.add(TP(topic, 0), [Rec(topic, 0, 0, b"A"), Rec(topic, 0, 1, b"B")], start=0)
    batch = builder.take()
    # Had the results been zipped as given, B would be lost or paired with A's record.
    assert [_vin(f) for f in batch.frames] == ["A", "B"]
    assert [r.offset for r in batch.records] == [0, 1]
    assert not batch.dead


class PanicException(BaseException):  # the name PyO3 gives a Rust panic
    """Stands for ``pyo3_runtime.PanicException``: a BaseException, not an Exception."""


def test_a_native_panic_is_a_decoder_error_not_a_dead_partition() -> None:
    topic = "nev.vehicle.raw"

    def panics(values: Sequence[bytes], received_ms: Sequence[int]) -> list[FrameRows]:
        if b"bug" in values:
            raise PanicException("index out of bounds")
        return [_decode(v, ms) for v, ms in zip(values, received_ms, strict=True)]

    builder = BatchBuilder({topic: Batched(panics)})
    builder.add(TP(topic, 0), [Rec(topic, 0, 0, b"A"), Rec(topic, 0, 1, b"bug")], start=0)
    batch = builder.take()
    assert [_vin(f) for f in batch.frames] == ["A"]
    assert batch.dead_reasons == {(topic, wire.DECODER_ERROR): 1}
    assert batch.next == {TP(topic, 0): 2}


def test_cancellation_inside_a_decoder_is_not_swallowed() -> None:
    topic = "nev.vehicle.raw"

    def interrupted(values: Sequence[bytes], received_ms: Sequence[int]) -> list[FrameRows]:
        raise KeyboardInterrupt

    builder = BatchBuilder({topic: Batched(interrupted)})
    with pytest.raises(KeyboardInterrupt):
        builder.add(TP(topic, 0), [Rec(topic, 0, 0, b"A")], start=0)
