"""Nothing but ``FrameError`` escapes the decoder, whatever the bytes; a decoded frame always
serialises to JSON; rejected frames carry a stable reason and an offset inside the frame."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.sim.envelope import seal
from ingest.decoders import Frame, FrameError, decode_frame, encode_frame, frame_to_dict
from ingest.decoders.errors import REASONS
from tests.unit import strategies as s

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))


def _check(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except FrameError as exc:
        assert exc.reason in REASONS
        assert 0 <= exc.offset <= len(data)
        return
    orjson.dumps(frame_to_dict(frame))
    # What decodes can be encoded again, or is refused with ValueError (e.g. a STRING whose
    # undecodable bytes became U+FFFD no longer fits its width).
    with contextlib.suppress(ValueError):
        encode_frame(frame)


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    _check(data)


@SETTINGS
@given(
    st.sampled_from([b"##", b"$$"]),
    st.integers(0, 255),
    st.sampled_from([0x01, 0xFE, 0x02, 0x03]),
    st.binary(min_size=17, max_size=17),
    st.sampled_from([0x01, 0x01, 0x01, 0x03, 0xFF]),
    st.binary(max_size=400),
)
def test_valid_envelope_random_data_unit(
    start: bytes, command: int, response: int, vin: bytes, enc: int, unit: bytes
) -> None:
    _check(seal(start + bytes((command, response)) + vin + bytes((enc, 0, 0)) + unit))


@SETTINGS
@given(s.any_frame(), st.data())
def test_mutated_frames(frame: Frame, data: st.DataObject) -> None:
    raw = bytearray(encode_frame(frame))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and raw:
            del raw[at : at + data.draw(st.integers(1, 8))]
        elif kind == "truncate":
            del raw[at:]
        elif raw:
            raw[at] = data.draw(st.sampled_from([0x00, 0xFE, 0xFF, 0x80, 0x7F]))
    _check(bytes(raw))  # as mutated: mostly length / BCC rejections
    _check(seal(bytes(raw)))  # sealed: the mutation reaches the block decoders


@pytest.mark.parametrize("size", range(0, 30))
def test_every_short_prefix_is_rejected_cleanly(size: int) -> None:
    frame = bytes.fromhex("232302FE") + b"LSFD03205HC001180" + bytes.fromhex("010006") + bytes(7)
    with pytest.raises(FrameError) as err:
        decode_frame(frame[:size])
    assert err.value.reason in ("truncated", "length_mismatch", "bad_checksum")
