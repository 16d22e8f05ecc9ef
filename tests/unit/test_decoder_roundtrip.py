"""decode(encode(x)) == x for generated records of every command and type of both editions."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingest.decoders import (
    Frame,
    FrameError,
    decode_frame,
    encode_block,
    encode_frame,
    frame_to_dict,
)
from ingest.decoders.registry import VEHICLE
from tests.unit import strategies as s

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# One test per edition and frame kind (``duplicates`` pairs the four): each gets its own
# examples and its own name in a failure report.
@SETTINGS
@given(s.realtime_frame(2016))
def test_realtime_2016_roundtrip(frame: Frame) -> None:
    _roundtrip(frame)


@SETTINGS
@given(s.realtime_frame(2025))
def test_realtime_2025_roundtrip(frame: Frame) -> None:
    _roundtrip(frame)


@SETTINGS
@given(s.body_frame(2016))
def test_commands_2016_roundtrip(frame: Frame) -> None:
    _roundtrip(frame)


@SETTINGS
@given(s.body_frame(2025))
def test_commands_2025_roundtrip(frame: Frame) -> None:
    _roundtrip(frame)


@pytest.mark.parametrize("edition", [2016, 2025])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_block_type_roundtrips_alone(edition: int, data: st.DataObject) -> None:
    # Each block in isolation: the registry's codec reads exactly what it wrote.
    rec = data.draw(s.block(edition))
    raw = encode_block(edition, rec)
    codec = VEHICLE.get(edition, raw[0])
    if codec is None:  # a custom block
        return
    decoded, end = codec.decode(raw, 1, len(raw))
    assert decoded == rec
    assert end == len(raw)


def _roundtrip(frame: Frame) -> None:
    raw = encode_frame(frame)
    try:
        decoded = decode_frame(raw)
    except FrameError as exc:
        # A partial frame whose bytes also read completely with a smaller motor / pack count
        # is ambiguous, and the decoder refuses it rather than keep rows that may be another
        # block's bytes (ingest/decoders/counts.py). Only partial frames can be ambiguous.
        assert frame.partial and exc.reason == "count_mismatch", exc
        event("ambiguous count")
        return
    assert decoded == frame
    assert encode_frame(decoded) == raw
    orjson.dumps(frame_to_dict(decoded))
