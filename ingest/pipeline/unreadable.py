"""Frames whose data unit no decoder can read: encrypted (header byte 0x02 RSA, 0x03 AES-128,
0x04 SM2, 0x05 SM4), or marked abnormal (0xFE), invalid (0xFF) or with a reserved byte. The
three GB/T 32960 envelopes (vehicle, charger profile, pack profile) share the header, and
their decoders keep such a unit opaque: rows marked ``encrypted`` with nothing in them, which
the batch builder would count as decoded and commit without a row or a letter. So each frame
topic's batch decoder passes its results through ``dead_letter_unreadable``: such a frame
becomes ``encrypted_unsupported`` and is kept intact on the dead-letter topic for a replay
once decryption exists (docs/security.md, "Encrypted data units"). A cipher byte does so
even with an empty unit; with 0xFE, 0xFF or a reserved byte a heartbeat with an empty unit
loses nothing and stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeVar

from ingest.decoders.errors import ENCRYPTED_UNSUPPORTED, FrameError

__all__ = ["CIPHERS", "ENCRYPTION_AT", "OPAQUE", "PLAIN", "UNIT_AT", "dead_letter_unreadable"]

ENCRYPTION_AT: Final = 21
# Header encryption bytes of a real cipher (0x02 RSA, 0x03 AES-128, 0x04 SM2, 0x05 SM4).
CIPHERS: Final = {0x02: "RSA", 0x03: "AES-128", 0x04: "SM2", 0x05: "SM4"}
PLAIN: Final = 0x01
# The other defined bytes; anything else is reserved. The decoder keeps such a unit opaque.
OPAQUE: Final = {0xFE: "abnormal", 0xFF: "invalid"}
UNIT_AT: Final = 24  # the data unit's first byte (its length WORD just before)

T = TypeVar("T")


def dead_letter_unreadable(values: Sequence[bytes], results: list[T]) -> list[T | FrameError]:
    """``results`` (one per value, rows or an exception) with each decoded frame whose data
    unit cannot be read replaced by an ``encrypted_unsupported`` ``FrameError``; returns it.
    A plain frame costs one byte comparison: this runs on every frame of three topics."""
    out: list[T | FrameError] = results  # type: ignore[assignment]  # replaced in place
    for i, value in enumerate(values):
        if len(value) <= UNIT_AT or value[ENCRYPTION_AT] == PLAIN:
            continue
        rows = out[i]
        if rows is None or isinstance(rows, BaseException):
            continue
        byte = value[ENCRYPTION_AT]
        cipher = CIPHERS.get(byte)
        if cipher is not None:
            detail = f"{cipher}-encrypted data unit: decryption is not implemented yet"
        elif getattr(rows, "encrypted", False) and value[UNIT_AT - 2 : UNIT_AT] != b"\0\0":
            what = OPAQUE.get(byte, "a reserved value")
            detail = f"encryption byte {byte:#04x} ({what}): the data unit cannot be read"
        else:
            continue  # an empty data unit (a heartbeat): nothing is lost
        out[i] = FrameError(ENCRYPTED_UNSUPPORTED, ENCRYPTION_AT, detail)
    return out
