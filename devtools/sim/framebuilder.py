"""A test-only frame builder: tests write the data unit as commented hex pieces and let the
builder add the header, length and BCC, so a golden case reads as the spec table it checks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from devtools.sim.envelope import frame, time_bytes
from ingest.decoders import FrameError, decode_frame, frame_to_dict

TIME_HEX = "19 0A 1B 14 02 02"  # 2025-10-27 20:02:02 (GMT+8)
TIME_ISO = "2025-10-27T20:02:02+08:00"
VIN = "LSFD03205HC001180"


def build(
    edition: int,
    command: int,
    *pieces: str,
    response: int = 0xFE,
    vin: str = VIN,
    encryption: int = 0x01,
) -> bytes:
    """A whole frame whose data unit is the concatenated hex ``pieces`` (spaces allowed)."""
    unit = bytes.fromhex("".join(p.replace(" ", "") for p in pieces))
    return frame(edition, command, vin, unit, response=response, encryption=encryption)


def decode_json(frame: bytes) -> dict[str, Any]:
    """The contract JSON of a frame (the decoder must accept it)."""
    return frame_to_dict(decode_frame(frame))


def block(edition: int, *pieces: str) -> dict[str, Any]:
    """The single block of a real-time frame made of ``pieces``."""
    d = decode_json(build(edition, 0x02, TIME_HEX, *pieces))
    assert not d["partial"], d["tail_reason"]
    (only,) = d["blocks"]
    assert isinstance(only, dict)
    return only


def reject(frame: bytes) -> FrameError:
    """The FrameError a frame is rejected with."""
    try:
        decode_frame(frame)
    except FrameError as exc:
        return exc
    raise AssertionError("the frame was accepted")


def time_hex(ts: datetime) -> str:
    """The 6-byte collection time of a data unit for ``ts`` (Beijing time, whole seconds)."""
    return time_bytes(int(ts.timestamp() * 1000)).hex()
