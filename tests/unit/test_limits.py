"""The input limits (ingest.config.limits): a record just over each limit is dead-lettered with
the limit's reason, one at the limit is decoded and kept. Real decoders (the native vehicle and
battery paths), frames built byte by byte so that the counts are exact."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nev_native
import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.rows import FrameRows
from devtools.sim.bench_frames import frames_of_kind
from devtools.sim.framebuilder import build
from ingest.config import limits as L
from ingest.config.kafka_limits import DEAD_LETTER_OVERHEAD
from ingest.config.kafka_settings import DEFAULT_MAX_RECORD_BYTES
from ingest.decoders import realtime
from ingest.decoders.battery.blocks import BATTERY as PACK_BLOCKS
from ingest.decoders.charger.frame import CHARGER_BLOCKS_PER_FRAME, decode_charger_frame
from ingest.decoders.envelope import MAX_FRAME_SIZE
from ingest.decoders.errors import FRAME_REASONS, LENGTH_MISMATCH, OVER_LIMIT, FrameError
from ingest.decoders.fast import decode_rows, decode_rows_batch
from ingest.decoders.frame import decode_frame
from ingest.pipeline import limits, row_limits, wire
from ingest.pipeline.adapters import decode_vehicle_batch
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.limits import (
    ORIGINAL_HEADER_BYTES,
    ORIGINAL_HEADER_COUNT,
    ORIGINAL_KEY_SIZE,
    limit_rows,
)
from ingest.pipeline.process import DECODERS
from ingest.pipeline.row_limits import VEHICLE_ROW_LIMITS
from ingest.pipeline.wrong_kind import WRONG_TOPIC
from tests.kinds_traffic import charger_realtime, pack_code, pack_realtime
from tests.unit.kafka_records import TP, Rec
from tests.unit.test_battery_golden import SENTINELS_2025

pytestmark = pytest.mark.unit

VEHICLE, BATTERY = TP("nev.vehicle.raw", 0), TP("nev.battery.raw", 0)
CHARGER = TP("nev.charger.raw", 0)
VIN = b"LSFD03205HC001180"
NOW = 1_761_962_400_000
TIME = bytes([25, 11, 1, 10, 0, 0])  # 2025-11-01 10:00:00 China time
MOTOR = bytes([1, 1, 100, 0x4E, 0x20, 0x4E, 0x20, 100, 0x0F, 0xA0, 0x27, 0x10])  # 12 bytes, 2016


def frame(data: bytes, command: int = 0x02, ident: bytes = VIN) -> bytes:
    """A 2016 frame (real-time unless ``command`` says otherwise) with data unit ``data``
    (time + blocks), length and BCC right."""
    body = bytes([command, 0xFE]) + ident + b"\x01" + len(data).to_bytes(2, "big") + data
    bcc = 0
    for b in body:
        bcc ^= b
    return b"##" + body + bytes([bcc])


def motors(*counts: int) -> bytes:
    """One 0x02 block per count (a count of at most 253: more blocks for more motors)."""
    return b"".join(bytes([0x02, n]) + MOTOR * n for n in counts)


def voltages(cells: Sequence[int]) -> bytes:
    """A 0x08 RESS voltage block: one subsystem per entry of ``cells`` (each at most 255)."""
    out = bytearray([0x08, len(cells)])
    for i, m in enumerate(cells):
        out += bytes([i + 1]) + (3000).to_bytes(2, "big") + (11000).to_bytes(2, "big")
        out += (m).to_bytes(2, "big") + (1).to_bytes(2, "big") + bytes([m]) + b"\x0f\xa0" * m
    return bytes(out)


def temperatures(probes: Sequence[int]) -> bytes:
    """A 0x09 RESS temperature block: one subsystem per entry of ``probes``."""
    out = bytearray([0x09, len(probes)])
    for i, n in enumerate(probes):
        out += bytes([i + 1]) + n.to_bytes(2, "big") + b"\x41" * n
    return bytes(out)


def cells_of(total: int) -> list[int]:
    """Subsystems of 200 cells (the 2016 page) and one of the rest, ``total`` cells in all."""
    return [200] * (total // 200) + ([total % 200] if total % 200 else [])


def run(
    *records: Rec, tp: TP = VEHICLE, max_value: int = DEFAULT_MAX_RECORD_BYTES
) -> tuple[list[object], list[tuple[str, bytes]]]:
    """Feed ``records`` to a batch builder with the pipeline's real decoder of ``tp``; the
    frames kept and the (reason, detail) of each dead letter, in order."""
    kind = {VEHICLE: "vehicle", BATTERY: "battery", CHARGER: "charger"}[tp]
    builder = BatchBuilder({tp.topic: DECODERS[kind]}, max_value_bytes=max_value)
    builder.add(tp, list(records), start=0)
    batch = builder.take()
    dead = [
        (
            (wire.header(d.headers, wire.ERROR_REASON) or b"").decode(),
            wire.header(d.headers, wire.ERROR_DETAIL) or b"",
        )
        for d in batch.dead
    ]
    return list(batch.frames), dead


def rec(value: bytes, offset: int = 0, **kw: object) -> Rec:
    return Rec(VEHICLE.topic, 0, offset, value, key=kw.pop("key", VIN), **kw)  # type: ignore[arg-type]


def one_kept(records: Sequence[Rec], tp: TP = VEHICLE) -> object:
    frames, dead = run(*records, tp=tp)
    assert dead == [] and len(frames) == 1
    return frames[0]


def one_dead(records: Sequence[Rec], reason: str, limit: str, tp: TP = VEHICLE) -> None:
    frames, dead = run(*records, tp=tp)
    assert frames == []
    assert [r for r, _ in dead] == [reason]
    if limit:
        assert f"limit {limit} ".encode() in dead[0][1], dead[0][1]


def test_every_limit_is_named_with_a_reason_and_why() -> None:
    names = [limit.name for limit in L.LIMITS]
    assert len(set(names)) == len(names)
    for limit in L.LIMITS:
        assert limit.value > 0 and limit.reason and limit.why and limit.where
    assert {limit.reason for limit in L.LIMITS} >= L.LIMIT_REASONS


def test_the_limits_repeat_the_decoders_numbers() -> None:
    assert L.FRAME_BYTES == MAX_FRAME_SIZE
    assert L.LENGTH_MISMATCH == LENGTH_MISMATCH
    # blocks_per_frame is checked inside the walks: Python reference and native (error.rs).
    assert L.BLOCKS_PER_FRAME == realtime.BLOCKS_PER_FRAME == nev_native.BLOCKS_PER_FRAME == 64
    # The charger profile's own, checked by its structured walk (charger/frame.py).
    assert L.CHARGER_BLOCKS_PER_FRAME == CHARGER_BLOCKS_PER_FRAME == 255 * 5 + 1
    assert nev_native.CHARGER_BLOCKS_PER_FRAME == CHARGER_BLOCKS_PER_FRAME
    assert L.OVER_LIMIT == OVER_LIMIT
    assert sorted(nev_native.FRAME_REASONS) == sorted(FRAME_REASONS)
    assert len(nev_native.FRAME_REASONS) == len(FRAME_REASONS)
    assert {L.TOO_LARGE, L.BAD_HEADER} <= wire.PIPELINE_REASONS


def test_the_dead_letter_of_a_record_at_every_limit_fits_the_producer() -> None:
    # The broker framing of a record at all limits at once, plus the error headers with a
    # full detail: what kafka.max_request_size (max_record_bytes + the overhead) must hold.
    headers = [("h", b"x" * (L.HEADER_BYTES - 1))]
    letter = wire.dead_letter(
        key=b"k" * L.KEY_BYTES,
        value=b"v" * DEFAULT_MAX_RECORD_BYTES,
        headers=headers,
        reason="over_limit",
        detail="d" * 5000,
        stage="decode",
        topic="t" * 249,  # Kafka's longest topic name
        partition=2**31 - 1,
        offset=2**63 - 1,
        timestamp_ms=2**63 - 1,
    )
    # aiokafka's upper bound of the record batch (the producer's own size check).
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        letter.key, letter.value, letter.headers
    )
    assert size <= DEFAULT_MAX_RECORD_BYTES + DEAD_LETTER_OVERHEAD


def test_record_bytes() -> None:
    at = frame(TIME + motors(1))
    assert len(one_kept([rec(at)], VEHICLE).motors) == 1  # type: ignore[attr-defined]
    frames, dead = run(rec(at), max_value=len(at))
    assert len(frames) == 1 and dead == []
    frames, dead = run(rec(at), max_value=len(at) - 1)
    assert frames == [] and [r for r, _ in dead] == [L.TOO_LARGE]


def test_frame_bytes() -> None:
    # A custom block (0x80, WORD length) fills the data unit to its maximum, 65531 bytes.
    fill = 65531 - len(TIME) - 3
    at = frame(TIME + b"\x80" + fill.to_bytes(2, "big") + b"\x00" * fill)
    assert len(at) == MAX_FRAME_SIZE
    one_kept([rec(at)])
    one_dead([rec(at + b"\x00")], LENGTH_MISMATCH, "")


@pytest.mark.parametrize("key", [None, b""])
def test_key_required(key: bytes | None) -> None:
    one_dead([rec(frame(TIME + motors(1)), key=key)], L.MISSING_KEY, "")


def test_a_keyless_heartbeat_passes() -> None:
    # The gateway keys a heartbeat of a terminal without a code with None: no rows, no order.
    beat = one_kept([rec(frame(b"", command=0x07, ident=b"\x00" * 17), key=None)])
    assert isinstance(beat, FrameRows) and beat.vehicle is None and beat.session is None


def test_key_bytes() -> None:
    value = frame(TIME + motors(1))
    one_kept([rec(value, key=b"K" * L.KEY_BYTES)])
    one_dead([rec(value, key=b"K" * (L.KEY_BYTES + 1))], L.BAD_KEY, "key_bytes")


def test_headers_per_record() -> None:
    value = frame(TIME + motors(1))
    at = [(f"h{i}", b"v") for i in range(L.HEADERS_PER_RECORD)]
    one_kept([rec(value, headers=at)])
    one_dead([rec(value, headers=[*at, ("one", b"more")])], L.BAD_HEADER, "headers_per_record")


def test_header_bytes() -> None:
    value = frame(TIME + motors(1))
    name = "gateway"
    at = [(name, b"g" * (L.HEADER_BYTES - len(name)))]
    one_kept([rec(value, headers=at)])
    over = [(name, b"g" * (L.HEADER_BYTES - len(name) + 1))]
    one_dead([rec(value, headers=over)], L.BAD_HEADER, "header_bytes")


def test_a_header_without_a_value_counts_as_empty_and_breaks_nothing() -> None:
    value = frame(TIME + motors(1))
    kept = one_kept([rec(value, headers=[(wire.RECEIVED_AT, None), ("peer", None)])])
    assert isinstance(kept, FrameRows)


def test_motors_per_frame() -> None:
    at = one_kept([rec(frame(TIME + motors(253)))])
    assert isinstance(at, FrameRows) and len(at.motors) == L.MOTORS_PER_FRAME
    # Repeated 0x02 blocks: each valid alone, together more motors than one frame may hold.
    one_dead([rec(frame(TIME + motors(253, 1)))], L.OVER_LIMIT, "motors_per_frame")


def grow(value: bytes, extra: bytes) -> bytes:
    """``value`` (a whole frame, either edition) with ``extra`` added to the end of its data
    unit; length and BCC right."""
    body = bytearray(value[2:-1] + extra)
    body[20:22] = (len(body) - 22).to_bytes(2, "big")
    bcc = 0
    for b in body:
        bcc ^= b
    return value[:2] + bytes(body) + bytes([bcc])


def test_blocks_per_frame() -> None:
    n = L.BLOCKS_PER_FRAME
    at = one_kept([rec(frame(TIME + motors(*[1] * n)))])
    assert isinstance(at, FrameRows) and len(at.motors) == n
    one_dead([rec(frame(TIME + motors(*[1] * (n + 1))))], L.OVER_LIMIT, "blocks_per_frame")
    # Tiny blocks: 5-byte engine blocks, 3-byte empty custom blocks (the cheapest ones).
    engine, custom = b"\x04" + b"\x00" * 5, b"\x80\x00\x00"
    one_kept([rec(frame(TIME + engine * (n - 1) + custom))])
    one_dead([rec(frame(TIME + engine * n + custom))], L.OVER_LIMIT, "blocks_per_frame")
    # A block that cannot be walked is a tail, not a block: the frame is kept, partial.
    partial = one_kept([rec(frame(TIME + custom * n + b"\x0a\x01\x02"))])
    assert isinstance(partial, FrameRows) and partial.tail_offset is not None


@pytest.mark.parametrize("edition", [2016, 2025])
def test_blocks_per_frame_native_and_structured_agree(edition: int) -> None:
    n = L.BLOCKS_PER_FRAME
    custom = "80 0000 "
    at = build(edition, 0x02, "190B010A0000", custom * n)
    assert decode_rows(at).tail_offset is None
    assert decode_frame(at).tail is None
    over = build(edition, 0x02, "190B010A0000", custom * (n + 1))
    errors = []
    for decode in (decode_rows, decode_frame):
        with pytest.raises(FrameError) as err:
            decode(over)
        errors.append((err.value.reason, err.value.offset, err.value.detail))
    # The type byte of block n + 1: after the header (24), the time (6) and n blocks.
    assert errors[0] == errors[1] and errors[0][:2] == (OVER_LIMIT, 24 + 6 + 3 * n)
    assert "limit blocks_per_frame (64)" in errors[0][2]


def test_blocks_per_frame_of_pack_and_charger_frames() -> None:
    code = pack_code(1)
    value = pack_realtime(NOW, code)
    end = 24 + int.from_bytes(value[22:24], "big")
    walked = realtime.walk_blocks(value, 24 + 6 + 24, end, 24, 2025, PACK_BLOCKS)
    assert walked.tail_start is None and walked.signature is None
    custom = b"\x80\x00\x00"

    def pack(extra: int) -> Rec:
        return Rec(BATTERY.topic, 0, 0, grow(value, custom * extra), key=code.encode())

    room = L.BLOCKS_PER_FRAME - len(walked.blocks)
    one_kept([pack(room)], BATTERY)
    one_dead([pack(room + 1)], L.OVER_LIMIT, "blocks_per_frame", BATTERY)

    cid = "MA5B85000P001"
    value = charger_realtime(NOW, cid)
    status = b"\x01" + cid.encode().ljust(26, b"\x00") + bytes([2, 0, 0])

    def charger(extra: int) -> Rec:
        return Rec(CHARGER.topic, 0, 0, grow(value, status * extra), key=value[4:21])

    room = L.CHARGER_BLOCKS_PER_FRAME - len(decode_charger_frame(value).blocks)
    one_kept([charger(room)], CHARGER)
    one_dead([charger(room + 1)], L.OVER_LIMIT, "charger_blocks_per_frame", CHARGER)


def test_a_pile_of_many_connectors_is_not_over_the_block_limit() -> None:
    # 22 connectors reporting status, output and demand: 66 blocks (2,605 bytes), over the
    # vehicles' 64 but a valid frame (its login registers up to 255): the rows of every one.
    value = charger_realtime(NOW, "MA5B85000P001")
    status, output, demand = (
        bytes([1]) + b"%s" + bytes([3, 50, 10]),
        bytes([2]) + b"%s" + bytes.fromhex("0FA0 03E8 0190 00003039 46"),
        bytes([3]) + b"%s" + b"LSVAU2180N2183294" + bytes.fromhex("32 1004 04B0"),
    )
    cids = [f"MA5B85000P9{k:02d}".encode().ljust(26, b"\x00") for k in range(22)]
    blocks = b"".join(b % cid for cid in cids for b in (status, output, demand))
    head = 24 + 6  # the header and the time: the realtime frame's own blocks replaced
    many = grow(value[:head] + value[-1:], blocks)
    assert len(many) == 2605 and len(decode_charger_frame(many).blocks) == 66
    rows = one_kept([Rec(CHARGER.topic, 0, 0, many, key=many[4:21])], CHARGER)
    assert isinstance(rows, ChargerRows)
    assert len(rows.statuses) == len(rows.telemetry) == 22


def test_pack_rows_per_frame() -> None:
    # Two voltage blocks of 250 one-cell subsystems: 500 pack rows (and only 500 cells).
    at = one_kept([rec(frame(TIME + voltages([1] * 250) * 2))])
    assert isinstance(at, FrameRows) and len(at.packs) == L.PACK_ROWS_PER_FRAME
    over = frame(TIME + voltages([1] * 250) * 2 + voltages([1]))
    one_dead([rec(over)], L.OVER_LIMIT, "pack_rows_per_frame")


def test_cells_per_frame() -> None:
    at = one_kept([rec(frame(TIME + voltages(cells_of(L.CELLS_PER_FRAME))))])
    assert isinstance(at, FrameRows)
    assert sum(len(p.cell_voltages_raw) for p in at.packs) == 2 * L.CELLS_PER_FRAME
    over = frame(TIME + voltages(cells_of(L.CELLS_PER_FRAME + 1)))
    one_dead([rec(over)], L.OVER_LIMIT, "cells_per_frame")


def test_probes_per_frame() -> None:
    at = one_kept([rec(frame(TIME + temperatures([L.PROBES_PER_FRAME])))])
    assert isinstance(at, FrameRows)
    assert sum(len(p.probe_temps_raw) for p in at.packs) == L.PROBES_PER_FRAME
    over = frame(TIME + temperatures([L.PROBES_PER_FRAME, 1]))
    one_dead([rec(over)], L.OVER_LIMIT, "probes_per_frame")


def test_pack_frames_have_the_cell_and_probe_limits_too() -> None:
    code = pack_code(1)

    def pack(**kw: object) -> Rec:
        value = pack_realtime(NOW, code, **kw)
        return Rec(BATTERY.topic, 0, 0, value, key=code.encode())

    at = one_kept([pack(cells=(3.3,) * L.CELLS_PER_FRAME)], BATTERY)
    assert isinstance(at, PackFrameRows) and at.telemetry is not None
    assert len(at.telemetry.cell_voltages_raw) == 2 * L.CELLS_PER_FRAME
    one_dead(
        [pack(cells=(3.3,) * (L.CELLS_PER_FRAME + 1))], L.OVER_LIMIT, "cells_per_frame", BATTERY
    )
    one_kept([pack(probes=(25,) * L.PROBES_PER_FRAME)], BATTERY)
    one_dead(
        [pack(probes=(25,) * (L.PROBES_PER_FRAME + 1))], L.OVER_LIMIT, "probes_per_frame", BATTERY
    )


def test_a_refused_record_does_not_disturb_its_neighbours() -> None:
    good = frame(TIME + motors(2))
    frames, dead = run(
        rec(good, 0),
        rec(good, 1, key=None),
        rec(frame(TIME + motors(253, 1)), 2),
        rec(good, 3),
    )
    assert [len(f.motors) for f in frames] == [2, 2]  # type: ignore[attr-defined]
    assert [r for r, _ in dead] == [L.MISSING_KEY, L.OVER_LIMIT]


def test_a_charger_or_pack_frame_on_the_vehicle_topic_is_wrong_topic() -> None:
    start = NOW - 60_000
    charger = [v for _, v in frames_of_kind("charger", 2, 1, start_ms=start)]
    packs = [v for _, v in frames_of_kind("battery", 2, 1, start_ms=start)]
    vehicles = [v for _, v in frames_of_kind("vehicle", 2, 1, start_ms=start)]
    records = [rec(v, i) for i, v in enumerate([*charger, *packs, *vehicles])]
    frames, dead = run(*records)
    assert [r for r, _ in dead] == [WRONG_TOPIC] * 4
    assert [b"kafka.topic_charger" in d for _, d in dead] == [True, True, False, False]
    assert len(frames) == 2


def test_a_pack_frame_with_a_vendor_block_on_the_vehicle_topic_is_wrong_topic() -> None:
    # The pack decoder stops at the vendor block too, but only after the pack's state and
    # probes; the vehicle decoder reads no block of it. Before, this was stored as a vehicle
    # with every value NULL, and the pack's own data was lost without a dead letter.
    decoded = decode_vehicle_batch([SENTINELS_2025], [NOW])[0]
    assert isinstance(decoded, FrameRows) and decoded.partial and decoded.tail_offset == 30
    frames, dead = run(rec(SENTINELS_2025, 0))
    assert frames == [] and [r for r, _ in dead] == [WRONG_TOPIC]
    assert b"kafka.topic_battery" in dead[0][1]


def test_partial_vehicle_frames_of_the_public_vectors_stay_vehicle_frames() -> None:
    # Frames with blocks the vehicle decoder cannot size are kept (partial): none of them is
    # taken for another profile's frame, although two decode (to no rows) as one.
    lines = (Path(__file__).parents[1] / "golden" / "vectors.jsonl").read_text().splitlines()
    values = [bytes.fromhex(orjson.loads(line)["hex"]) for line in lines]
    decoded = decode_vehicle_batch(values, [NOW] * len(values))
    partial = [v for v, r in zip(values, decoded, strict=True) if getattr(r, "partial", False)]
    assert len(partial) >= 10
    frames, dead = run(*(rec(v, i) for i, v in enumerate(partial)))
    assert len(frames) == len(partial) and dead == []


def test_the_dead_letter_of_a_bulky_record_does_not_repeat_its_bulk() -> None:
    # Copying 8 KiB of headers into a dead letter costs the producer ten times a plain letter:
    # a record over a key or header limit keeps its value, not its key's or headers' bulk.
    value = frame(TIME + motors(1))
    headers = [(wire.RECEIVED_AT, b"1761962400000"), ("gateway", b"g" * L.HEADER_BYTES)]
    builder = BatchBuilder({VEHICLE.topic: DECODERS["vehicle"]})
    builder.add(VEHICLE, [rec(value, 0, headers=headers), rec(value, 1, key=b"K" * 1000)], 0)
    over_headers, over_key = builder.take().dead
    assert over_headers.value == value and over_headers.key == VIN
    assert wire.header(over_headers.headers, "gateway") is None
    assert wire.header(over_headers.headers, wire.RECEIVED_AT) == b"1761962400000"
    assert (
        wire.header(over_headers.headers, ORIGINAL_HEADER_BYTES)
        == str(11 + 13 + 7 + L.HEADER_BYTES).encode()
    )
    assert wire.header(over_headers.headers, ORIGINAL_HEADER_COUNT) == b"2"
    assert wire.header(over_headers.headers, wire.ERROR_REASON) == L.BAD_HEADER.encode()
    assert over_key.key == b"K" * 256 and over_key.value == value
    assert wire.header(over_key.headers, ORIGINAL_KEY_SIZE) == b"1000"
    assert sum(len(k) + len(v) for k, v in over_headers.headers) < 2000


@pytest.mark.parametrize(
    ("value", "reason"), [(b"", wire.EMPTY_VALUE), (b"\x00" * 2000, wire.TOO_LARGE)]
)
def test_a_record_refused_before_decoding_does_not_repeat_its_bulk_either(
    value: bytes, reason: str
) -> None:
    # Empty or too large: refused before the key and headers are judged; with a 100 KB key
    # and 1 MB of headers its letter used to carry them all, a megabyte per letter.
    headers = [(wire.RECEIVED_AT, b"1761962400000")] + [(f"h{i}", b"x" * 30_000) for i in range(30)]
    builder = BatchBuilder({VEHICLE.topic: DECODERS["vehicle"]}, max_value_bytes=1000)
    builder.add(VEHICLE, [rec(value, 0, key=b"K" * 100_000, headers=headers)], 0)
    (letter,) = builder.take().dead
    assert wire.header(letter.headers, wire.ERROR_REASON) == reason.encode()
    assert letter.key == b"K" * 256
    assert wire.header(letter.headers, ORIGINAL_KEY_SIZE) == b"100000"
    assert wire.header(letter.headers, ORIGINAL_HEADER_COUNT) == b"31"
    assert wire.header(letter.headers, wire.RECEIVED_AT) == b"1761962400000"
    assert sum(len(k) + len(v) for k, v in letter.headers) < 2000
    if reason == wire.TOO_LARGE:  # what the too-large letter keeps of the value, as before
        assert wire.header(letter.headers, wire.ORIGINAL_SIZE) == b"2000"


def test_other_dead_letters_stay_the_whole_record() -> None:
    headers = [("gateway", b"gw-1"), ("peer", b"10.0.0.1:5555")]
    builder = BatchBuilder({VEHICLE.topic: DECODERS["vehicle"]})
    builder.add(VEHICLE, [rec(frame(TIME + motors(253, 1)), headers=headers)], 0)
    (letter,) = builder.take().dead
    assert letter.headers[:2] == headers and letter.key == VIN


def _same(native: object, reference: object) -> None:
    """The native limit check's item is what ``limit_rows`` makes of the built rows."""
    assert type(native) is type(reference)
    if isinstance(reference, FrameError):
        assert isinstance(native, FrameError)
        assert (native.reason, native.offset, str(native)) == (
            reference.reason,
            reference.offset,
            str(reference),
        )
    else:
        assert isinstance(native, FrameRows) and isinstance(reference, FrameRows)
        assert (native.vehicle, native.motors, native.packs, native.copy) == (
            reference.vehicle,
            reference.motors,
            reference.packs,
            reference.copy,
        )


AT_AND_OVER = [
    TIME + motors(253),
    TIME + motors(253, 1),
    TIME + voltages([1] * 250) * 2,
    TIME + voltages([1] * 250) * 2 + voltages([1]),
    TIME + voltages(cells_of(L.CELLS_PER_FRAME)),
    TIME + voltages(cells_of(L.CELLS_PER_FRAME + 1)),
    TIME + temperatures([L.PROBES_PER_FRAME]),
    TIME + temperatures([L.PROBES_PER_FRAME, 1]),
    TIME + motors(254 // 2, 254 // 2) + voltages(cells_of(L.CELLS_PER_FRAME + 1)),  # two at once
]


def test_the_native_count_rejects_what_limit_rows_rejects_with_its_error() -> None:
    values = [frame(data) for data in AT_AND_OVER]
    values += [v for _, v in frames_of_kind("vehicle", 20, 2, start_ms=NOW - 60_000)]
    native = decode_rows_batch(values, [NOW] * len(values), VEHICLE_ROW_LIMITS)
    built = decode_rows_batch(values, [NOW] * len(values))
    reasons = []
    for n, b in zip(native, built, strict=True):
        _same(n, limit_rows(b))
        reasons.append(n.reason if isinstance(n, FrameError) else "")
    assert reasons[: len(AT_AND_OVER)] == ["", OVER_LIMIT] * 4 + [OVER_LIMIT]


@pytest.mark.parametrize(
    ("small", "crossed"),
    [
        ((0, 9, 9999, 9999), "motors_per_frame"),
        ((9, 0, 9999, 9999), "pack_rows_per_frame"),
        ((9, 9, 95, 9999), "cells_per_frame"),
        ((9, 9, 96, 31), "probes_per_frame"),
        ((9, 9, 96, 32), None),
    ],
    ids=["motors", "pack_rows", "cells", "probes", "at_every_limit"],
)
def test_each_native_limit_on_fleet_frames(
    small: tuple[int, int, int, int], crossed: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fleet frames (1 motor, 1 pack of 96 cells and 32 probes) against limits just below or at
    # their counts; limit_rows and the errors' texts are given the same limits.
    names = ("motors_per_frame", "pack_rows_per_frame", "cells_per_frame", "probes_per_frame")
    constants = ("MOTORS_PER_FRAME", "PACK_ROWS_PER_FRAME", "CELLS_PER_FRAME", "PROBES_PER_FRAME")
    for constant, value in zip(constants, small, strict=True):
        monkeypatch.setattr(limits, constant, value)
    table = {n: (v, *row_limits._ROW_LIMITS[n][1:]) for n, v in zip(names, small, strict=True)}
    monkeypatch.setattr(row_limits, "_ROW_LIMITS", table)
    values = [v for _, v in frames_of_kind("vehicle", 10, 2, start_ms=NOW - 60_000)]
    native = decode_rows_batch(values, [NOW] * len(values), (*small, row_limits.over_limit))
    built = decode_rows_batch(values, [NOW] * len(values))
    for n, b in zip(native, built, strict=True):
        _same(n, limit_rows(b))
    errors = [str(n) for n in native if isinstance(n, FrameError)]
    if crossed is None:
        assert errors == []
    else:
        assert len(errors) == len(values) and all(f"limit {crossed} " in e for e in errors)


def test_a_frame_over_a_limit_is_not_built() -> None:
    # The point of counting first: a 254-motor frame costs its walk, not 254 row objects that
    # limit_rows would throw away (docs/performance.md, whole-pipeline fuzz).
    value = [frame(TIME + motors(253, 1))]
    tracemalloc.start()
    try:
        decode_vehicle_batch(value, [NOW])  # the pipeline's decoder passes the limits
        counted = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        decode_rows_batch(value, [NOW])
        built = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counted * 10 < built


def test_an_error_maker_that_makes_no_frame_error_is_a_decoder_bug() -> None:
    # Anything else in the frame's place would pass as a frame without data.
    value = [frame(TIME + motors(253, 1))]
    with pytest.raises(TypeError, match="no FrameError for motors_per_frame"):
        wrong: Any = lambda name, count: None  # noqa: E731 - typed Any: the point of the test
        decode_rows_batch(value, [NOW], (*VEHICLE_ROW_LIMITS[:4], wrong))
