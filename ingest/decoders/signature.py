"""The vehicle signature of the 2025 edition (Table 8): after the 0xFF marker that ends a
real-time / reissue data unit, and (without marker) at the end of an activation (Table B.3).

    field       type      meaning
    algorithm   BYTE      0x01 SM2, 0x02 RSA, 0x03 ECC, others reserved
    R length    WORD
    r           BYTE[R]   the R value (RSA: the whole signature, S empty)
    S length    WORD
    s           BYTE[S]   the S value

What is signed: "from the first byte of the collection time to the byte before the signature
information", i.e. ``frame[signed_start:signed_end]`` = data unit start .. the byte before the
0xFF marker (the marker itself is excluded, as rtm_con and sunsky74 both do). The decoder does
not verify; it keeps algorithm, r, s and that range so a verifier with the vehicle's public
key (from activation) can. Observed RSA: PKCS#1 v1.5 + SHA-256; SM2 details are unconfirmed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, Final

from ingest.decoders.fields import Record, need

__all__ = [
    "SIGNATURE_ALGORITHMS",
    "SIGNATURE_MARKER",
    "Signature",
    "decode_signature",
    "encode_signature",
    "find_signature",
]

SIGNATURE_MARKER: Final = 0xFF
SIGNATURE_ALGORITHMS: Final = {0x01: "SM2", 0x02: "RSA", 0x03: "ECC"}
_U16: Final = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class Signature(Record):
    """A vehicle signature and the frame byte range it signs (``frame[start:end]``)."""

    name: ClassVar[str] = "signature"
    algorithm: int = 0x02
    r: bytes = b""
    s: bytes = b""
    # Where the signed bytes are in the frame: derived from the position, so not compared.
    signed_start: int = field(default=0, compare=False)
    signed_end: int = field(default=0, compare=False)


def decode_signature(
    buf: bytes, off: int, end: int, signed_start: int, signed_end: int
) -> tuple[Signature, int]:
    """Table 8 at ``off`` (after any marker); returns the signature and the offset after it."""
    need(off, 3, end, "signature")
    algorithm = buf[off]
    (r_len,) = _U16.unpack_from(buf, off + 1)
    off += 3
    need(off, r_len + 2, end, "signature r")
    r = buf[off : off + r_len]
    off += r_len
    (s_len,) = _U16.unpack_from(buf, off)
    off += 2
    need(off, s_len, end, "signature s")
    s = buf[off : off + s_len]
    off += s_len
    return Signature(algorithm, r, s, signed_start, signed_end), off


def find_signature(buf: bytes, lo: int, end: int) -> int | None:
    """The offset of a 0xFF marker in ``[lo, end)`` whose Table 8 body ends exactly at ``end``,
    searching backwards (§3.12 step 3): the last such marker is the signature, whereas the
    first 0xFF may be a sentinel inside a block."""
    p = buf.rfind(b"\xff", lo, end - 5)
    while p >= lo:
        if buf[p + 1] in SIGNATURE_ALGORITHMS:
            (r_len,) = _U16.unpack_from(buf, p + 2)
            q = p + 4 + r_len
            if q + 2 <= end and q + 2 + _U16.unpack_from(buf, q)[0] == end:
                return p
        p = buf.rfind(b"\xff", lo, p)
    return None


def encode_signature(sig: Signature) -> bytes:
    """Table 8 (without the 0xFF marker)."""
    if len(sig.r) > 0xFFFF or len(sig.s) > 0xFFFF:
        raise ValueError("signature r/s longer than 65535 bytes")
    return bytes((sig.algorithm,)) + _U16.pack(len(sig.r)) + sig.r + _U16.pack(len(sig.s)) + sig.s
