"""The platform's answers to GB/T 32960 command packets (§6.3.2 of both editions).

The body rule of both editions: the answer "changes the response flag, keeps the packet time,
deletes the rest of the content, and recomputes the check", i.e. the request's header with a
new response flag, N = 6, the request's 6-byte time, BCC. Chosen over the 2016 Annex B
reading (echo the whole body with a fresh time, which EMQX sends for vehicle login) because
the 2025 edition aligned Annex B with the body rule, and terminals accept both
(/work/shared/protocol/GBT32960.md §2.2). Heartbeat (0x07) has no time, so its answer has
N = 0; a time-calibration answer (0x08) carries the platform's current time (its purpose).

Pure: bytes in, bytes out; the caller passes ``now``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from ingest.decoders.checksum import bcc
from ingest.decoders.envelope import HEADER_SIZE
from ingest.decoders.fields import encode_time

__all__ = [
    "ERROR",
    "HEARTBEAT",
    "SUCCESS",
    "TIME_CALIBRATION",
    "answer",
]

SUCCESS: Final = 0x01
ERROR: Final = 0x02  # 2016 "error" / 2025 "other error"
HEARTBEAT: Final = 0x07
TIME_CALIBRATION: Final = 0x08
_TIME: Final = 6
_PLAIN: Final = 0x01  # the answer's data unit is not encrypted


def answer(frame: bytes, flag: int, now: datetime) -> bytes:
    """The answer to the command packet ``frame`` (whole, checked) with response ``flag``."""
    command = frame[2]
    length = frame[22] << 8 | frame[23]
    if command == TIME_CALIBRATION:
        unit = encode_time(now)
    elif command == HEARTBEAT or length < _TIME:
        unit = b""
    else:
        unit = frame[HEADER_SIZE : HEADER_SIZE + _TIME]
    out = bytearray(frame[:HEADER_SIZE])
    out[3] = flag
    out[21] = _PLAIN
    out[22:24] = len(unit).to_bytes(2, "big")
    out += unit
    out.append(bcc(out, 2, len(out)))
    return bytes(out)
