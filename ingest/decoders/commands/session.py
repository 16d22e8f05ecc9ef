"""Vehicle logout (0x04, Table 28 / 2016 Table 20), platform login (0x05, 2016 Table 21 /
2025 Table 29) and platform logout (0x06, Table 30 / 2016 Table 22). After the time:

    logout:          logout_seq WORD (equals the serial of the current login)
    platform login:  login_seq WORD, username STRING12 (may be GB 18030), password STRING20,
                     encryption_rule BYTE (0x01 none, 0x02 RSA, 0x03 AES, 2025 0x04 SM2,
                     0x05 SM4, FE/FF)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.fields import Record, need
from ingest.decoders.text import decode_text, encode_text

__all__ = [
    "Logout",
    "PlatformLogin",
    "decode_logout",
    "decode_platform_login",
    "encode_logout",
    "encode_platform_login",
]

_LOGOUT: Final = struct.Struct(">H")  # logout serial number
_PLATFORM_LOGIN: Final = struct.Struct(
    ">"
    "H"  # login serial number
    "12s"  # platform user name
    "20s"  # platform password
    "B"  # encryption rule
)


@dataclass(frozen=True, slots=True)
class Logout(Record):
    """A vehicle or platform logout."""

    name: ClassVar[str] = "logout"
    logout_seq: int = 1


@dataclass(frozen=True, slots=True)
class PlatformLogin(Record):
    """A platform login (the header's unique ID is the platform's code)."""

    name: ClassVar[str] = "platform_login"
    login_seq: int = 1
    username: str = ""
    password: str = ""
    encryption_rule: int = 0x01


def decode_logout(buf: bytes, off: int, end: int) -> tuple[Logout, int, str | None]:
    need(off, 2, end, "logout")
    return Logout(_LOGOUT.unpack_from(buf, off)[0]), off + 2, None


def encode_logout(rec: Logout) -> bytes:
    return _LOGOUT.pack(rec.logout_seq)


def decode_platform_login(buf: bytes, off: int, end: int) -> tuple[PlatformLogin, int, str | None]:
    need(off, _PLATFORM_LOGIN.size, end, "platform_login")
    seq, user, password, rule = _PLATFORM_LOGIN.unpack_from(buf, off)
    body = PlatformLogin(seq, decode_text(user), decode_text(password), rule)
    return body, off + _PLATFORM_LOGIN.size, None


def encode_platform_login(rec: PlatformLogin) -> bytes:
    return _PLATFORM_LOGIN.pack(
        rec.login_seq,
        encode_text(rec.username, 12),
        encode_text(rec.password, 20),
        rec.encryption_rule,
    )
