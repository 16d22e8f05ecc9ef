"""The pack fast path (``decode_pack_rows``) agrees with the structured decoder: for the golden
frames, generated frames (Hypothesis, the round-trip test's strategies) and mutated bytes, its
rows equal the rows derived here, slowly and independently, from ``decode_pack_frame``'s
records -- partial frames included -- and when one rejects a frame the other rejects it with
the same reason at the same offset."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contract.battery import PackFrameRows
from ingest.decoders import FrameError
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackFrame,
    PackProbes,
    PackState,
    Site,
    decode_pack_frame,
    decode_pack_rows,
    encode_pack_frame,
    rows_of_pack_frame,
)
from ingest.decoders.battery.blocks import STATE_LAYOUT
from ingest.decoders.errors import REASONS
from tests.unit.frame_mutations import mutate, reseal
from tests.unit.test_battery_golden import (
    ID_HEX,
    LOGIN_2025,
    LOGOUT_2016,
    REALTIME_2016,
    SENTINELS_2025,
)
from tests.unit.test_battery_roundtrip import frames

pytestmark = pytest.mark.unit

RECEIVED = datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SLOTS = ("edition", "command", "pack_code", "ts_ms", "encrypted", "partial", "response")


def _last(frame: PackFrame, cls: type) -> Any:
    found = [b for b in frame.blocks if isinstance(b, cls)]
    return found[-1] if found else None


def _extremes(values: list[int]) -> tuple[int | None, int | None]:
    return (min(values), max(values)) if values else (None, None)


def expected(frame: PackFrame) -> dict[str, Any]:
    """The rows of a structured frame as plain data: a telemetry row from the last block of
    each type for real-time / reissue command packets; ``rows_of_pack_frame`` for the rest."""
    out = as_data(rows_of_pack_frame(frame))
    realtime = frame.command in (2, 3) and frame.response == 0xFE and not frame.encrypted
    if not realtime or frame.time is None or frame.pack_code is None:
        return out
    state = _last(frame, PackState)
    scalars = [None] * 8 if state is None else [getattr(state, n) for n in STATE_LAYOUT.names]
    site = _last(frame, Site)
    cells = _last(frame, PackCells)
    volts = None if cells is None else cells.voltages_v
    mvs = [None if v is None else round(v * 1000) for v in volts or ()]
    probes = _last(frame, PackProbes)
    temps = None if probes is None else probes.temps_c
    alarm = _last(frame, PackAlarm)
    level = flags = None
    faults = 0
    if alarm is not None:
        level, flags, faults = alarm.max_level, alarm.flags, len(alarm.fault_codes or ())
        if level or flags:
            codes = list(alarm.fault_codes or ())
            out["alarm"] = (frame.pack_code, frame.time, level, flags, codes)
    out["telemetry"] = (
        frame.pack_code, frame.time, RECEIVED, frame.edition, frame.command, *scalars,
        None if site is None else site.site_id or None, None if site is None else site.slot,
        None if volts is None else len(volts), mvs,
        *_extremes([v for v in mvs if v is not None]),
        None if temps is None else len(temps), list(temps or ()),
        *_extremes([c for c in temps or () if c is not None]),
        level, flags, faults,
    )  # fmt: skip
    return out


def as_data(rows: PackFrameRows) -> dict[str, Any]:
    """Every slot of ``rows``; the raw cell / probe bytes read back as values."""
    out: dict[str, Any] = {name: getattr(rows, name) for name in _SLOTS}
    out["tail_offset"] = rows.tail_offset
    out["session"] = None if rows.session is None else tuple(rows.session)
    out["alarm"] = None if rows.alarm is None else tuple(rows.alarm)
    t = rows.telemetry
    if t is None:
        out["telemetry"] = None
        return out
    cells = struct.unpack(f">{len(t.cell_voltages_raw) // 2}H", t.cell_voltages_raw)
    values: list[Any] = list(t)
    values[t._fields.index("cell_voltages_raw")] = [None if v >= 0xFFFE else v for v in cells]
    probes = [None if b >= 0xFE else b - 40 for b in t.probe_temps_raw]
    values[t._fields.index("probe_temps_raw")] = probes
    out["telemetry"] = tuple(values)
    return out


def assert_agree(raw: bytes) -> str:
    """Both paths on ``raw``: equal rows, or the same rejection. Returns what happened."""
    try:
        frame = decode_pack_frame(raw)
    except FrameError as exc:
        assert exc.reason in REASONS
        with pytest.raises(FrameError) as fast:
            decode_pack_rows(raw, RECEIVED)
        assert (fast.value.reason, fast.value.offset, fast.value.detail) == (
            exc.reason,
            exc.offset,
            exc.detail,
        )
        return exc.reason
    want = expected(frame)
    assert as_data(decode_pack_rows(raw, RECEIVED)) == want
    assert as_data(decode_pack_rows(memoryview(raw), RECEIVED)) == want
    return "partial" if frame.partial else "ok"


@pytest.mark.parametrize("raw", [REALTIME_2016, LOGIN_2025, LOGOUT_2016, SENTINELS_2025])
def test_golden_frames_agree(raw: bytes) -> None:
    assert assert_agree(raw) in ("ok", "partial")
    assert assert_agree(raw) in ("ok", "partial")  # again, with the pack's IDs cached


def test_a_cached_pack_is_still_checked_against_its_header() -> None:
    # Cached ID + code, then the same code under another pack's header ID: both reject it.
    assert assert_agree(REALTIME_2016) == "ok"
    other = bytes.fromhex(ID_HEX[:-2] + "33")  # serial ...043 in the header
    assert assert_agree(reseal(REALTIME_2016[:4] + other + REALTIME_2016[21:])) == "bad_identity"


@pytest.mark.parametrize(
    ("inside", "want"),
    [
        (b"SWAP\x00SH-0001", "SWAP\ufffdSH-0001"),  # a C string: its terminator inside
        ("站\x00点".encode("gb18030"), "站\ufffd点"),  # the GB 18030 branch
    ],
)
def test_a_nul_inside_the_site_id_is_replaced_by_both_paths(inside: bytes, want: str) -> None:
    # PostgreSQL refuses NUL in text: left in, one such pack failed the COPY of every batch.
    at = REALTIME_2016.find(b"SWAP-SH-0001")
    raw = reseal(REALTIME_2016[:at] + inside.ljust(20, b"\x00") + REALTIME_2016[at + 20 :])
    assert assert_agree(raw) == "ok"
    telemetry = decode_pack_rows(raw, RECEIVED).telemetry
    assert telemetry is not None and telemetry.site_id == want


@SETTINGS
@given(frames())
def test_generated_frames_agree(frame: PackFrame) -> None:
    event(assert_agree(encode_pack_frame(frame)))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.sampled_from([0, 24, 24, 24]), st.data())
def test_mutated_frames_agree(frame: PackFrame, first: int, data: st.DataObject) -> None:
    event(assert_agree(mutate(encode_pack_frame(frame), data, first)))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"##", b"$$"]), st.sampled_from([2, 3, 7]))
def test_random_data_units_agree(body: bytes, start: bytes, command: int) -> None:
    head = start + bytes((command, 0xFE)) + bytes.fromhex(ID_HEX) + b"\x01\x00\x00"
    code = REALTIME_2016[30:54]
    event(assert_agree(reseal(head + bytes.fromhex("190102030405") + code + body + b"\x00")))
