"""Vehicle login (command 0x01): 2016 Table 6, 2025 Table 6. The collection time comes first
and is decoded by the frame; the body is:

    2016                                     2025
    login_seq   WORD     1..65531, daily     login_seq   WORD
    iccid       STRING20                     iccid       STRING20
    ress_count  BYTE n   0..250              bms count   BYTE n   0..20
    code_length BYTE m   0..50 (0 = no codes)  packs/BMS BYTE[n]  m_i 0..50
    pack_codes  n x m    STRING              pack_codes  sum(m_i) x 24, GB/T 34014 codes

A 2016 login with m = 0 (common: n = 1, m = 0) carries no codes: ``pack_codes`` is empty.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.codec import need_items
from ingest.decoders.fields import Record, need
from ingest.decoders.text import decode_text, encode_text

__all__ = ["PACK_CODE_LENGTH", "Login", "decode_2016", "decode_2025", "encode_2016", "encode_2025"]

PACK_CODE_LENGTH: Final = 24  # GB/T 34014 traction-battery code

_HEAD: Final = struct.Struct(
    ">"
    "H"  # login serial number
    "20s"  # ICCID
    "B"  # 2016: RESS subsystem count n; 2025: BMS count n
)


@dataclass(frozen=True, slots=True)
class Login(Record):
    """A vehicle login. 2016 fills ``ress_count``/``code_length``; 2025 ``bms_pack_counts``."""

    name: ClassVar[str] = "login"
    login_seq: int = 1
    iccid: str = ""
    pack_codes: tuple[str, ...] = ()
    ress_count: int | None = None  # 2016 n
    code_length: int | None = None  # 2016 m
    bms_pack_counts: tuple[int, ...] | None = None  # 2025: packs per BMS


def decode_2016(buf: bytes, off: int, end: int) -> tuple[Login, int, str | None]:
    need(off, _HEAD.size + 1, end, "login")
    seq, iccid, n = _HEAD.unpack_from(buf, off)
    m = buf[off + _HEAD.size]
    off += _HEAD.size + 1
    codes: tuple[str, ...] = ()
    if m:
        need_items(off, n, m, end, "login pack codes")
        codes = tuple(decode_text(buf[off + i * m : off + (i + 1) * m]) for i in range(n))
        off += n * m
    return Login(seq, decode_text(iccid), codes, n, m, None), off, None


def decode_2025(buf: bytes, off: int, end: int) -> tuple[Login, int, str | None]:
    need(off, _HEAD.size, end, "login")
    seq, iccid, n = _HEAD.unpack_from(buf, off)
    off += _HEAD.size
    need_items(off, n, 1, end, "login packs per BMS")
    counts = tuple(buf[off : off + n])
    off += n
    total = sum(counts)
    need_items(off, total, PACK_CODE_LENGTH, end, "login pack codes")
    step = PACK_CODE_LENGTH
    codes = tuple(decode_text(buf[off + i * step : off + (i + 1) * step]) for i in range(total))
    off += total * step
    return Login(seq, decode_text(iccid), codes, None, None, counts), off, None


def encode_2016(rec: Login) -> bytes:
    m = rec.code_length if rec.code_length is not None else 0
    n = rec.ress_count if rec.ress_count is not None else len(rec.pack_codes)
    if m and len(rec.pack_codes) != n:
        raise ValueError(f"login: {len(rec.pack_codes)} pack codes for ress_count {n}")
    head = _HEAD.pack(rec.login_seq, encode_text(rec.iccid, 20), n) + bytes((m,))
    return head + b"".join(encode_text(c, m) for c in rec.pack_codes) if m else head


def encode_2025(rec: Login) -> bytes:
    counts = rec.bms_pack_counts if rec.bms_pack_counts is not None else (len(rec.pack_codes),)
    if sum(counts) != len(rec.pack_codes):
        raise ValueError(f"login: {len(rec.pack_codes)} pack codes for counts {counts}")
    head = _HEAD.pack(rec.login_seq, encode_text(rec.iccid, 20), len(counts)) + bytes(counts)
    return head + b"".join(encode_text(c, PACK_CODE_LENGTH) for c in rec.pack_codes)
