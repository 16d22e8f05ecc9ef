"""The frame envelope of GB/T 32960.3 (§6.2, Table 2 of both editions): header and check code.

    offset size field
    0      2    start marker   "##" = 2016 edition, "$$" = 2025 edition
    2      1    command flag   Table 3 / Annex B Table B.2
    3      1    response flag  Table 4; 0xFE = a command, anything else a response
    4      17   unique ID      the VIN (or a platform / custom code), STRING
    21     1    encryption     0x01 none, 0x02 RSA, 0x03 AES, 0x04 SM2, 0x05 SM4 (2025), FE/FF
    22     2    length N       data-unit bytes, WORD big-endian, 0..65531
    24     N    data unit
    24+N   1    BCC            XOR of bytes 2 .. 23+N

``parse_envelope`` checks, in this order: start marker, header present, N <= 65531, frame size
== 25 + N, BCC. Each failure is a ``FrameError`` with a stable reason and the offending offset.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ingest.decoders.checksum import bcc
from ingest.decoders.errors import BAD_CHECKSUM, BAD_START, LENGTH_MISMATCH, TRUNCATED, FrameError
from ingest.decoders.text import decode_text, encode_text

__all__ = [
    "EDITION_2016",
    "EDITION_2025",
    "HEADER",
    "HEADER_SIZE",
    "MAX_DATA_LENGTH",
    "MAX_FRAME_SIZE",
    "MIN_FRAME_SIZE",
    "START_MARKERS",
    "Envelope",
    "encode_envelope",
    "parse_envelope",
    "start_marker",
]

EDITION_2016: Final = 2016
EDITION_2025: Final = 2025
START_MARKERS: Final = {b"##": EDITION_2016, b"$$": EDITION_2025}
_START_BYTE: Final = {0x23: EDITION_2016, 0x24: EDITION_2025}  # first byte -> edition
_MARKER: Final = {edition: marker for marker, edition in START_MARKERS.items()}

HEADER: Final = struct.Struct(
    ">"
    "2s"  # start marker: b"##" (2016) or b"$$" (2025)
    "B"  # command flag
    "B"  # response flag (0xFE = command)
    "17s"  # unique ID (VIN), NUL/space padded STRING
    "B"  # data-unit encryption
    "H"  # data-unit length N, big-endian WORD
)
HEADER_SIZE: Final = HEADER.size  # 24
# The standard caps N at 65531, so no valid frame exceeds 65556 bytes: a receive buffer (and the
# framer) can refuse anything longer without reading it.
MAX_DATA_LENGTH: Final = 65531
MIN_FRAME_SIZE: Final = HEADER_SIZE + 1
MAX_FRAME_SIZE: Final = HEADER_SIZE + MAX_DATA_LENGTH + 1

ENCRYPTION_NONE: Final = 0x01


class Envelope(NamedTuple):
    """The header of a checked frame; the data unit is ``frame[24 : 24 + length]``.

    A NamedTuple rather than a frozen dataclass: it is built once per frame on the fast path,
    and tuple construction costs a fraction of a frozen dataclass's ``__init__``.
    """

    edition: int  # 2016 ("##") | 2025 ("$$")
    command: int  # command flag
    response: int  # response flag; 0xFE = command packet
    vin: str  # unique ID as text, padding stripped; not yet checked (decode_frame applies
    # the identity rules of identity.py after the response flag is known)
    encryption: int  # raw encryption byte
    length: int  # data-unit length N

    @property
    def encrypted(self) -> bool:
        """True when the data unit is not plain text (anything but 0x01 "none").

        RSA/AES/SM2/SM4 payloads are ciphertext; 0xFE/0xFF and reserved codes give no plaintext
        guarantee either, so the decoders keep all of them opaque rather than guess.
        """
        return self.encryption != ENCRYPTION_NONE


def parse_envelope(frame: bytes | bytearray | memoryview) -> Envelope:
    """Check a whole frame's envelope and return its header; raise ``FrameError`` if rejected.

    Reasons: ``bad_start`` (offset of the first wrong marker byte), ``truncated`` (fewer than
    25 bytes), ``length_mismatch`` (N > 65531 at offset 22, or frame size != 25 + N at the
    offset where the bytes run out or the excess starts), ``bad_checksum`` (at the BCC byte).
    """
    size = len(frame)
    if size and frame[0] not in _START_BYTE:
        raise FrameError(BAD_START, 0, f"start byte {frame[0]:#04x} is neither '#' nor '$'")
    if size > 1 and frame[1] != frame[0]:
        raise FrameError(BAD_START, 1, f"start marker {bytes(frame[0:2])!r}")
    if size < MIN_FRAME_SIZE:
        raise FrameError(TRUNCATED, size, f"{size} bytes, a frame has at least {MIN_FRAME_SIZE}")
    _, command, response, vin, encryption, length = HEADER.unpack_from(frame)
    if length > MAX_DATA_LENGTH:
        raise FrameError(LENGTH_MISMATCH, 22, f"data-unit length {length} > {MAX_DATA_LENGTH}")
    end = HEADER_SIZE + length
    if size != end + 1:
        raise FrameError(
            LENGTH_MISMATCH,
            min(size, end + 1),
            f"frame has {size} bytes, data-unit length {length} needs {end + 1}",
        )
    check = bcc(frame, 2, end)
    if check != frame[end]:
        detail = f"BCC {frame[end]:#04x}, computed {check:#04x} over bytes 2..{end - 1}"
        raise FrameError(BAD_CHECKSUM, end, detail)
    return Envelope(_START_BYTE[frame[0]], command, response, decode_text(vin), encryption, length)


def start_marker(edition: int) -> bytes:
    """``b"##"`` or ``b"$$"``; ``ValueError`` for any other edition (encoders call it before
    they encode the data unit, so that this is the error an unknown edition gets)."""
    marker = _MARKER.get(edition)
    if marker is None:
        raise ValueError(f"edition {edition} is neither 2016 nor 2025")
    return marker


def encode_envelope(
    edition: int, command: int, response: int, ident: str, encryption: int, unit: bytes
) -> bytes:
    """A whole frame around the data unit ``unit``: header, unit and BCC (the one writer of
    the envelope for the vehicle, pack and charger profiles). Raises ``ValueError`` for what
    the header cannot carry (an unknown edition, N > 65531, a byte value out of range)."""
    marker = start_marker(edition)
    if len(unit) > MAX_DATA_LENGTH:
        raise ValueError(f"data unit of {len(unit)} bytes exceeds {MAX_DATA_LENGTH}")
    try:
        head = HEADER.pack(marker, command, response, encode_text(ident, 17), encryption, len(unit))
    except struct.error as exc:
        raise ValueError(f"frame header does not fit: {exc}") from None
    out = head + unit
    return out + bytes((bcc(out, 2, len(out)),))
