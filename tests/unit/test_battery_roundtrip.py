"""Battery profile properties: encode -> decode is the identity on generated frames; the fast
path's rows agree with the structured records; and whatever the bytes (mutations of good
frames, resealed so that they pass the BCC), nothing but ``FrameError`` escapes either
decoder, and both decide the same way."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.battery import PackFrameRows
from contract.clock import CHINA_TZ
from ingest.decoders import FrameError, battery
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackFrame,
    PackLogin,
    PackLogout,
    PackProbes,
    PackState,
    Site,
    pack_frame_to_json,
)
from ingest.decoders.battery.blocks import STATE_LAYOUT
from ingest.decoders.blocks.custom import CustomBlock
from ingest.decoders.checksum import bcc
from ingest.decoders.errors import REASONS
from ingest.decoders.pack_code import encode_date_code

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _text(n: int) -> st.SearchStrategy[str]:
    return st.text(ALNUM, min_size=n, max_size=n)


codes = st.builds(
    lambda m, p, b, s, t, d, n: m + p + b + s + t + encode_date_code(d) + n,
    _text(3),
    st.sampled_from("PMC"),
    st.sampled_from("ABCDEFGZ"),
    _text(2),
    _text(7),
    st.dates(min_value=date(2010, 1, 1), max_value=date(2041, 12, 31)),
    _text(7),
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - naive bounds, zone set below
    max_value=datetime(2099, 12, 31),  # noqa: DTZ001 - naive bounds, zone set below
).map(lambda t: t.replace(microsecond=0, tzinfo=CHINA_TZ))


def _opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


tenths = st.integers(0, 60_000).map(lambda r: r / 10)
states = st.builds(
    PackState,
    _opt(st.integers(1, 5)),
    _opt(st.integers(1, 3)),
    _opt(st.integers(0, 100)),
    _opt(st.integers(0, 100)),
    _opt(st.integers(0, 65_533)),
    _opt(tenths),
    _opt(st.integers(0, 60_000).map(lambda r: (r - 30_000) / 10)),
    _opt(st.integers(0, 60_000)),
)
sites = st.builds(Site, st.text(ALNUM + "-_", max_size=20), _opt(st.integers(0, 65_533)))
cells = st.builds(
    PackCells,
    _opt(st.lists(_opt(st.integers(0, 60_000).map(lambda r: r / 1000)), max_size=40).map(tuple)),
)
probes = st.builds(PackProbes, _opt(st.lists(_opt(st.integers(-40, 210)), max_size=40).map(tuple)))
alarms = st.builds(
    PackAlarm,
    _opt(st.integers(0, 4)),
    st.integers(0, 2**32 - 1),
    _opt(st.lists(st.integers(0, 2**32 - 1), max_size=5).map(tuple)),
)
customs = st.builds(CustomBlock, st.integers(0x80, 0xFE), st.binary(max_size=8))
blocks = st.lists(st.one_of(states, sites, cells, probes, alarms, customs), max_size=7)


@st.composite
def frames(draw: st.DrawFn) -> PackFrame:
    code = draw(codes)
    command = draw(st.sampled_from((0x01, 0x02, 0x03, 0x04)))
    base: dict[str, Any] = {"edition": draw(st.sampled_from((2016, 2025))), "command": command}
    base |= {"ident": code[7:], "time": draw(times), "pack_code": code}
    if command == 0x01:
        login = PackLogin(
            draw(st.integers(0, 65_535)),
            draw(st.text("0123456789", max_size=20)),
            draw(st.none() | codes.filter(lambda c: c != code)),
            *draw(st.tuples(_opt(tenths), _opt(tenths), _opt(tenths))),
            draw(_opt(st.integers(0, 2000))),
            draw(_opt(st.integers(0, 1000))),
        )
        return PackFrame(**base, body=login)
    if command == 0x04:
        return PackFrame(**base, body=PackLogout(draw(st.integers(0, 65_535))))
    return PackFrame(**base, blocks=tuple(draw(blocks)))


@SETTINGS
@given(frames())
def test_round_trip(frame: PackFrame) -> None:
    raw = battery.encode_pack_frame(frame)
    assert battery.decode_pack_frame(raw) == frame
    pack_frame_to_json(frame)


def _last(frame: PackFrame, cls: type) -> object:
    found = [b for b in frame.blocks if isinstance(b, cls)]
    return found[-1] if found else None


@SETTINGS
@given(
    frames().filter(lambda f: f.command in (0x02, 0x03)), st.datetimes(timezones=st.just(CHINA_TZ))
)
def test_fast_rows_agree_with_records(frame: PackFrame, received: datetime) -> None:
    raw = battery.encode_pack_frame(frame)
    rows = battery.decode_pack_rows(raw, received)
    t = rows.telemetry
    assert t is not None and not rows.partial
    assert (t.pack_code, t.ts, t.received_at, t.command) == (
        frame.pack_code,
        frame.time,
        received,
        frame.command,
    )
    state = _last(frame, PackState)
    names = STATE_LAYOUT.names
    expected = (
        [getattr(state, n) for n in list(names)[:8]] if isinstance(state, PackState) else [None] * 8
    )
    assert list(t[5:13]) == expected
    site = _last(frame, Site)
    assert (t.site_id, t.slot) == (
        (site.site_id or None, site.slot) if isinstance(site, Site) else (None, None)
    )
    c = _last(frame, PackCells)
    volts = c.voltages_v if isinstance(c, PackCells) else None
    mv = [round(v * 1000) for v in volts or () if v is not None]
    assert t.cell_count == (None if volts is None else len(volts))
    assert (t.cell_min_mv, t.cell_max_mv) == ((min(mv), max(mv)) if mv else (None, None))
    p = _last(frame, PackProbes)
    temps = p.temps_c if isinstance(p, PackProbes) else None
    good = [x for x in temps or () if x is not None]
    assert t.probe_count == (None if temps is None else len(temps))
    assert (t.probe_min_c, t.probe_max_c) == ((min(good), max(good)) if good else (None, None))
    a = _last(frame, PackAlarm)
    if isinstance(a, PackAlarm):
        assert (t.max_alarm_level, t.alarm_flags) == (a.max_level, a.flags)
        assert t.fault_count == len(a.fault_codes or ())
        assert (rows.alarm is not None) == bool(a.max_level or a.flags)
    else:
        assert (t.max_alarm_level, t.alarm_flags, t.fault_count, rows.alarm) == (
            None,
            None,
            0,
            None,
        )


def _seal(body: bytes) -> bytes:
    if len(body) < 25:
        return body
    n = len(body) - 25
    body = body[:22] + min(n, 0xFFFF).to_bytes(2, "big") + body[24:]
    return body[:-1] + bytes((bcc(body, 2, len(body) - 1),))


def _outcome(decode: object, raw: bytes) -> object:
    try:
        result = decode(raw)  # type: ignore[operator]
    except FrameError as exc:
        assert exc.reason in REASONS
        assert 0 <= exc.offset <= len(raw)
        return (exc.reason, exc.offset)
    return result


@SETTINGS
@given(
    frames(),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    st.integers(0, 3),
    st.booleans(),
)
def test_only_frame_error_escapes_and_both_decoders_decide_alike(
    frame: PackFrame, flips: list[tuple[int, int]], cut: int, seal: bool
) -> None:
    raw = bytearray(battery.encode_pack_frame(frame))
    for at, value in flips:
        raw[at % len(raw)] = value
    data = bytes(raw[: len(raw) - cut] if cut else raw)
    data = _seal(data) if seal else data
    structured = _outcome(battery.decode_pack_frame, data)
    fast = _outcome(battery.decode_pack_rows, data)
    if isinstance(structured, tuple):
        assert fast == structured
    else:
        assert isinstance(structured, PackFrame)
        pack_frame_to_json(structured)
        assert isinstance(fast, PackFrameRows), fast
        assert fast.partial == structured.partial
        assert (fast.telemetry is not None) == (
            structured.pack_code is not None and structured.command in (2, 3)
        )
