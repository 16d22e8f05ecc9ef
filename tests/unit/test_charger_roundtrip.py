"""The charger profile's encoder is the decoder's inverse for every frame it can produce
(Hypothesis), and whatever the bytes, only ``FrameError`` escapes (fuzz)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.clock import CHINA_TZ
from ingest.decoders import FrameError
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    ChargerLogin,
    ChargerLogout,
    ConnectorEntry,
    ConnectorStatus,
    Faults,
    Output,
    VehicleDemand,
    decode_charger_frame,
    decode_charger_rows,
    encode_charger_frame,
)
from ingest.decoders.errors import REASONS
from tests.unit.test_charger_golden import LOGIN, REALTIME

pytestmark = pytest.mark.unit

_UP = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PRINT = "".join(chr(c) for c in range(0x21, 0x7F))
op_ids = st.text(_UP, min_size=9, max_size=9)
charger_ids = st.builds(lambda o, p: o + p, op_ids, st.text(_PRINT, min_size=8, max_size=8))
cids = st.text(_PRINT, min_size=1, max_size=26)
# Hypothesis bounds are naive; the zone is attached after.
times = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(  # noqa: DTZ001
    lambda d: d.replace(microsecond=0, tzinfo=CHINA_TZ)
)


def scaled(top: int, div: int) -> st.SearchStrategy[float | int | None]:
    values = st.integers(0, top).map(lambda r: r if div == 1 else r / div)
    return st.none() | values


blocks = st.one_of(
    st.builds(
        ConnectorStatus,
        cids,
        st.sampled_from([0, 1, 2, 3, 4, 255]),
        st.sampled_from([0, 10, 50]),
        st.sampled_from([0, 10, 50]),
    ),
    st.builds(
        Output,
        cids,
        scaled(15000, 10),  # in range: out-of-range values decode with a quality note
        scaled(20000, 10),
        scaled(15000, 10),
        scaled(0xFFFFFFFD, 1000),
        st.none() | st.integers(-40, 210),
        quality=st.just(()),
    ),
    st.builds(
        VehicleDemand,
        cids,
        st.none() | st.text(_UP, min_size=17, max_size=17),
        st.none() | st.integers(0, 100),
        scaled(15000, 10),
        scaled(20000, 10),
        quality=st.just(()),
    ),
    st.builds(
        ChargeOrder,
        cids,
        st.text(_PRINT, min_size=27, max_size=27),
        st.integers(1, 5),
        times,
        scaled(0xFFFFFFFD, 100),
        scaled(0xFFFFFFFD, 100),
        scaled(0xFFFFFFFD, 100),
        quality=st.just(()),
    ),
    st.builds(Faults, st.none() | cids, st.lists(st.integers(0, 2**32 - 1), max_size=8).map(tuple)),
)
entries = st.builds(
    ConnectorEntry,
    cids,
    st.integers(1, 6),
    st.none() | st.integers(0, 0xFFFD),
    st.none() | st.integers(0, 0xFFFD),
    st.none() | st.integers(0, 0xFFFD),
    scaled(0xFFFD, 10),
    st.none() | st.sampled_from([1, 2]),
    quality=st.just(()),
)
logins = st.builds(
    ChargerLogin,
    st.integers(0, 0xFFFF),
    st.none() | st.text(_PRINT, min_size=1, max_size=20),
    st.text(_PRINT, min_size=1, max_size=23),
    st.lists(entries, min_size=1, max_size=4).map(tuple),
)


def _own_orders(frame: ChargerFrame) -> ChargerFrame:
    """The frame with each order's StartChargeSeq under its own OperatorID (OperatorID + 18:
    another prefix is bad_field)."""
    op = frame.charger_id[:9]
    own = tuple(
        replace(b, start_charge_seq=op + b.start_charge_seq[9:])
        if isinstance(b, ChargeOrder)
        else b
        for b in frame.blocks
    )
    return replace(frame, blocks=own)


frames = st.one_of(
    st.builds(
        ChargerFrame,
        st.sampled_from([0x02, 0x03]),
        charger_ids,
        time=times,
        blocks=st.lists(blocks, max_size=4).map(tuple),
    ).map(_own_orders),
    st.builds(ChargerFrame, st.just(0x01), charger_ids, time=times, body=logins),
    st.builds(
        ChargerFrame,
        st.just(0x04),
        charger_ids,
        time=times,
        body=st.builds(ChargerLogout, st.integers(0, 0xFFFF)),
    ),
)


@given(frames)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_decode_of_encode_is_identity(frame: ChargerFrame) -> None:
    raw = encode_charger_frame(frame)
    assert decode_charger_frame(raw) == frame
    assert encode_charger_frame(decode_charger_frame(raw)) == raw
    decode_charger_rows(raw)  # the row path accepts every frame the decoder does


def _only_frame_errors(data: bytes) -> None:
    try:
        decode_charger_rows(data)
    except FrameError as exc:
        assert exc.reason in REASONS
        assert 0 <= exc.offset <= len(data)


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_raise_only_frame_error(data: bytes) -> None:
    _only_frame_errors(data)


@given(
    st.sampled_from([REALTIME, LOGIN]),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
)
@settings(max_examples=1000)
def test_mutated_golden_frames_raise_only_frame_error(
    base: bytes, edits: list[tuple[int, int]]
) -> None:
    b = bytearray(base)
    for pos, value in edits:
        b[pos % len(b)] = value
    _only_frame_errors(bytes(b))
