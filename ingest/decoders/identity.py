"""The unique ID of the header (bytes 4..20): which identities are accepted, and as what text.

Every row is keyed by this identity, so it must never be garbled or shared by accident: a NUL
inside it is refused by PostgreSQL, bytes that are not ASCII decode to U+FFFD (17 of them are
one identity for every broken device), and an all-NUL ID is ``""``. Two rules:

- frames whose rows are keyed by the VIN -- command packets (response flag 0xFE) of vehicle
  login 0x01, real-time 0x02, reissue 0x03 and vehicle logout 0x04 -- must carry a VIN:
  exactly 17 characters, digits and upper-case letters (GB 16735), no padding. I, O and Q
  are *not* refused, although GB 16735 excludes them: a real terminal capture sends
  ``ACTIACS2018101001`` (36node fixtures), and they cannot merge two devices. The check digit
  is not verified either (a wrong one still names one device; that is master data's job);
- every other frame (platform login/logout, heartbeat, time calibration, parameter and control
  commands, responses, custom commands) may carry "a unique custom code" (§6.2): 0..17
  printable ASCII characters (0x21..0x7E) followed only by NUL or space padding. An empty ID
  is accepted there because real heartbeats carry an all-NUL one and they store no rows.

Anything else is ``FrameError(bad_identity)`` at the first offending byte (docs/protocols/
gbt32960.md, "Identity").
"""

from __future__ import annotations

from typing import Final

from ingest.decoders.errors import BAD_IDENTITY, FrameError

__all__ = ["ID_OFFSET", "ID_SIZE", "check_identity", "is_vin", "vin_keyed"]

ID_OFFSET: Final = 4
ID_SIZE: Final = 17
_VIN_BYTES: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PRINTABLE: Final = frozenset(range(0x21, 0x7F))
_PAD: Final = frozenset(b"\x00 ")
_VIN_COMMANDS: Final = frozenset({0x01, 0x02, 0x03, 0x04})
_COMMAND_PACKET: Final = 0xFE


def is_vin(text: str) -> bool:
    """Whether ``text`` is a VIN as the decoders accept one (the rule above)."""
    return len(text) == ID_SIZE and all(ord(c) in _VIN_BYTES for c in text)


def vin_keyed(command: int, response: int) -> bool:
    """Whether a frame's rows are keyed by its ID (so the ID must be a VIN)."""
    return response == _COMMAND_PACKET and command in _VIN_COMMANDS


def check_identity(raw: bytes, vin: bool) -> str:
    """The ID field ``raw`` (17 bytes) as text, or ``FrameError(bad_identity)``.

    ``vin`` selects the VIN rule (see ``vin_keyed``); the offset is the frame offset of the
    first byte that breaks the rule.
    """
    if vin:
        for i, b in enumerate(raw):
            if b not in _VIN_BYTES:
                raise FrameError(
                    BAD_IDENTITY,
                    ID_OFFSET + i,
                    f"unique ID byte {b:#04x} at position {i + 1}: a VIN is 17 digits and "
                    "upper-case letters (GB 16735)",
                )
        return raw.decode("ascii")
    n = len(raw)
    while n and raw[n - 1] in _PAD:
        n -= 1
    for i in range(n):
        b = raw[i]
        if b not in _PRINTABLE:
            raise FrameError(
                BAD_IDENTITY,
                ID_OFFSET + i,
                f"unique ID byte {b:#04x} at position {i + 1}: an ID is printable ASCII, "
                "padded with NUL or space at the end only",
            )
    return raw[:n].decode("ascii")
