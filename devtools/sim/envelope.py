"""The GB/T 32960 envelope around a data unit, as every simulator writes it: start marker,
command, response, 17-byte VIN, encryption, length, unit, BCC; the 6-byte Beijing collection
time; simulated VINs. Frame builders, the fleet, the benchmark preload and the mutating fuzz
tests all seal frames here, so that "a valid frame" means one thing across them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from contract.clock import CHINA_TZ
from ingest.decoders.checksum import bcc

__all__ = ["HEADER_LEN", "TIME_AT", "china_time", "frame", "reseal", "seal", "time_bytes", "vin_of"]

HEADER_LEN: Final = 24  # ## or $$, command, response, VIN (17), encryption, length (2)
TIME_AT: Final = HEADER_LEN  # a real-time/reissue unit opens with YY MM DD hh mm ss


def vin_of(i: int, prefix: str) -> str:
    """A 17-character VIN for simulated vehicle ``i``: ``prefix`` then ``i`` zero-padded."""
    return f"{prefix}{i:0{17 - len(prefix)}d}"


def china_time(ms: int) -> datetime:
    """Epoch milliseconds as the whole second of Beijing time a frame carries."""
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(CHINA_TZ).replace(microsecond=0)


def time_bytes(ms: int) -> bytes:
    """The frame's 6-byte collection time (YY MM DD hh mm ss, Beijing) of epoch ``ms``."""
    t = china_time(ms)
    return bytes((t.year - 2000, t.month, t.day, t.hour, t.minute, t.second))


def frame(
    edition: int,
    command: int,
    vin: str,
    unit: bytes,
    *,
    response: int = 0xFE,
    encryption: int = 0x01,
) -> bytes:
    """A whole frame around the data ``unit``; a VIN shorter than 17 is NUL-padded (tests of
    bad identities need that), a longer one is written as given."""
    head = (b"##" if edition == 2016 else b"$$") + bytes((command, response))
    head += vin.encode().ljust(17, b"\0") + bytes((encryption,)) + len(unit).to_bytes(2, "big")
    body = head + unit
    return body + bytes((bcc(body, 2, len(body)),))


def reseal(raw: bytes | bytearray) -> bytes:
    """``raw`` with its last byte set to the BCC of everything after the start marker (after a
    test or the preload patched bytes in place); a bytearray is fixed in place, saving a copy."""
    out = raw if isinstance(raw, bytearray) else bytearray(raw)
    out[-1] = bcc(out, 2, len(out) - 1)
    return bytes(out)


def seal(body: bytes) -> bytes:
    """A header and unit (no BCC) with the length field fixed and the BCC appended, so that a
    mutation reaches the data unit (no-op below a header)."""
    if len(body) < HEADER_LEN:
        return body
    n = min(len(body) - HEADER_LEN, 0xFFFF)
    framed = body[:22] + n.to_bytes(2, "big") + body[HEADER_LEN : HEADER_LEN + n]
    return framed + bytes((bcc(framed, 2, len(framed)),))
