"""``decode_pack_frame``: one whole frame of the battery-pack profile to a ``PackFrame``.

The envelope is GB/T 32960.3's (``envelope.parse_envelope``: start, length, BCC); what differs
is the identity rule, the command set and the data units (docs/protocols/battery.md):

    0x01 pack_login    time, login_seq WORD, iccid STRING(20), pack_code STRING(24),
                       original_code STRING(24) (NUL: none), rated_capacity_ah WORD 0.1,
                       rated_energy_kwh WORD 0.1, nominal_voltage_v WORD 0.1,
                       cell_count WORD, probe_count WORD
    0x02 realtime      time, pack_code STRING(24), information blocks (blocks.py)
    0x03 reissue       the same
    0x04 pack_logout   time, logout_seq WORD, pack_code STRING(24)
    0x07 heartbeat     empty;  0x08 time_sync: empty
    0xC0-0xFE custom   kept opaque

Command packets of 0x01-0x04 carry the full GB/T 34014 code, and the header ID must be its
positions 8-24; any other frame's ID is a printable code (``identity.check_identity``).
Only ``FrameError`` escapes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final

from ingest.decoders.battery.blocks import BATTERY
from ingest.decoders.envelope import parse_envelope
from ingest.decoders.errors import (
    BAD_FIELD,
    BAD_IDENTITY,
    TRUNCATED,
    UNKNOWN_COMMAND,
    FrameError,
)
from ingest.decoders.fields import Field, Layout, Quality, Record, decode_time, need
from ingest.decoders.identity import ID_OFFSET, ID_SIZE, check_identity
from ingest.decoders.pack_code import CODE_LENGTH, PackCodeError, decode_pack_code
from ingest.decoders.realtime import walk_blocks
from ingest.decoders.signature import Signature
from ingest.decoders.text import decode_text
from ingest.decoders.unit import FrameTimes, opaque_fields, optional_time, walk_fields

__all__ = [
    "COMMAND_NAMES",
    "PACK_COMMANDS",
    "PackFrame",
    "PackLogin",
    "PackLogout",
    "decode_pack_frame",
    "read_pack_code",
]

RESPONSE_COMMAND: Final = 0xFE
COMMAND_NAMES: Final = {
    0x01: "pack_login",
    0x02: "realtime",
    0x03: "reissue",
    0x04: "pack_logout",
    0x07: "heartbeat",
    0x08: "time_sync",
}
PACK_COMMANDS: Final = frozenset({0x01, 0x02, 0x03, 0x04})  # carry the full pack code
_TIMED: Final = PACK_COMMANDS
_CUSTOM: Final = range(0xC0, 0xFF)
_NUL_CODE: Final = frozenset(b"\x00 ")


@dataclass(frozen=True, slots=True)
class PackLogin(Record):
    """Pack login: the pack's static data. ``original_code`` is the code a second-life pack
    had before it was re-coded (GB/T 34014 §4.2 keeps it), else ``None``."""

    name: ClassVar[str] = "pack_login"
    login_seq: int = 1
    iccid: str = ""
    original_code: str | None = None
    rated_capacity_ah: float | None = None
    rated_energy_kwh: float | None = None
    nominal_voltage_v: float | None = None
    cell_count: int | None = None
    probe_count: int | None = None
    quality: Quality = ()


@dataclass(frozen=True, slots=True)
class PackLogout(Record):
    name: ClassVar[str] = "pack_logout"
    logout_seq: int = 1


LOGIN_HEAD: Final = struct.Struct(">H20s")
LOGIN_TAIL: Final = Layout(
    (
        Field("rated_capacity_ah", "H", div=10),
        Field("rated_energy_kwh", "H", div=10),
        Field("nominal_voltage_v", "H", div=10, hi=60_000),
        Field("cell_count", "H", hi=2000),
        Field("probe_count", "H", hi=1000),
    )
)
LOGIN_SIZE: Final = LOGIN_HEAD.size + 2 * CODE_LENGTH + LOGIN_TAIL.size  # 80


@dataclass(frozen=True, slots=True)
class PackFrame(FrameTimes):
    """A decoded pack frame. ``ident`` is the header ID; ``pack_code`` the full code of
    0x01-0x04 command packets (``None`` otherwise). The field list mirrors ``Frame``'s on
    purpose (a declaration; the behaviour they share is ``unit.FrameTimes`` and ``unit``'s
    helpers): field order is the record's constructor and JSON order."""

    edition: int
    command: int
    response: int = RESPONSE_COMMAND
    ident: str = ""
    encryption: int = 0x01
    time: datetime | None = None
    pack_code: str | None = None
    body: Record | None = None
    blocks: tuple[Record, ...] = ()
    signature: Signature | None = None
    tail: bytes | None = None
    tail_reason: str | None = field(default=None, compare=False)
    tail_offset: int | None = field(default=None, compare=False)
    tail_detail: str = field(default="", compare=False)

    @property
    def partial(self) -> bool:
        """A block could not be walked (unknown type, custom overrun, bad signature ...)."""
        return self.tail is not None and self.tail_reason not in _NOT_PARTIAL

    @property
    def command_name(self) -> str:
        name = COMMAND_NAMES.get(self.command)
        return name if name else ("custom" if self.command in _CUSTOM else "unknown")


_NOT_PARTIAL: Final = frozenset({"encrypted", "custom_command", "response_data"})


def read_pack_code(buf: bytes, off: int, end: int) -> str:
    """The 24-byte pack code at ``off``, validated; ``bad_identity`` at the faulty byte."""
    need(off, CODE_LENGTH, end, "pack code")
    text = buf[off : off + CODE_LENGTH].decode("latin-1")
    try:
        decode_pack_code(text)
    except PackCodeError as exc:
        at = off + max(exc.position - 1, 0)
        raise FrameError(BAD_IDENTITY, at, f"pack code {text!r}: {exc}") from None
    return text


def decode_pack_frame(data: bytes | bytearray | memoryview) -> PackFrame:
    """Decode one whole frame (start marker through BCC). Raises only ``FrameError``."""
    buf = data if type(data) is bytes else bytes(data)
    env = parse_envelope(buf)
    command, response = env.command, env.response
    raw_id = buf[ID_OFFSET : ID_OFFSET + ID_SIZE]
    keyed = response == RESPONSE_COMMAND and command in PACK_COMMANDS
    ident = _keyed_id(raw_id) if keyed else check_identity(raw_id, False)
    base: dict[str, Any] = {
        "edition": env.edition,
        "command": command,
        "response": response,
        "ident": ident,
        "encryption": env.encryption,
    }
    start, end = 24, 24 + env.length
    if command not in COMMAND_NAMES:
        if command in _CUSTOM:
            return PackFrame(**base, **opaque_fields(buf, start, end, "custom_command"))
        raise FrameError(UNKNOWN_COMMAND, 2, f"command {command:#04x} is not in the pack profile")
    if env.encrypted:
        return PackFrame(**base, **opaque_fields(buf, start, end, "encrypted"))
    if not keyed:
        return _untimed_or_response(buf, start, end, base)
    if end - start < 6:
        raise FrameError(TRUNCATED, start, f"{end - start} data-unit bytes, the time needs 6")
    time = decode_time(buf, start)
    pos = start + 6
    body: Record
    if command == 0x01:
        body, code, pos = _login(buf, pos, end)
    elif command == 0x04:
        need(pos, 2 + CODE_LENGTH, end, "pack logout")
        body = PackLogout(buf[pos] << 8 | buf[pos + 1])
        code = read_pack_code(buf, pos + 2, end)
        pos += 2 + CODE_LENGTH
    else:
        code = read_pack_code(buf, pos, end)
        _same_pack(ident, code)
        walk = walk_blocks(buf, pos + CODE_LENGTH, end, start, env.edition, BATTERY)
        return PackFrame(**base, time=time, pack_code=code, **walk_fields(buf, walk))
    _same_pack(ident, code)
    if pos < end:
        # A login / logout has a fixed size: extra bytes mean a layout this decoder does not
        # know, and its fields cannot be trusted.
        raise FrameError(BAD_FIELD, pos, f"{end - pos} bytes after the {COMMAND_NAMES[command]}")
    return PackFrame(**base, time=time, pack_code=code, body=body)


def _keyed_id(raw: bytes) -> str:
    """The header ID of a pack-keyed frame: 17 characters 0-9 A-Z (positions 8-24 of a
    GB/T 34014 code; same character rule as a VIN, so the vehicle check applies)."""
    try:
        return check_identity(raw, True)
    except FrameError as exc:
        detail = exc.detail.replace("a VIN is 17 digits", "a pack ID is 17 digits")
        raise FrameError(BAD_IDENTITY, exc.offset, detail.replace(" (GB 16735)", "")) from None


def _same_pack(ident: str, code: str) -> None:
    if code[7:] != ident:
        raise FrameError(
            BAD_IDENTITY,
            ID_OFFSET,
            f"header ID {ident!r} is not positions 8-24 of the pack code {code!r}",
        )


def _login(buf: bytes, pos: int, end: int) -> tuple[PackLogin, str, int]:
    need(pos, LOGIN_SIZE, end, "pack login")
    seq, iccid = LOGIN_HEAD.unpack_from(buf, pos)
    pos += LOGIN_HEAD.size
    code = read_pack_code(buf, pos, end)
    pos += CODE_LENGTH
    raw = buf[pos : pos + CODE_LENGTH]
    original = None
    if not _NUL_CODE.issuperset(raw):
        original = read_pack_code(buf, pos, end)
        if original == code:
            raise FrameError(BAD_FIELD, pos, "original_code repeats the pack code: send NULs")
    pos += CODE_LENGTH
    values, quality = LOGIN_TAIL.read(buf, pos, end, "pack login")
    cap, energy, volts, cells, probes = values
    login = PackLogin(seq, decode_text(iccid), original, cap, energy, volts, cells, probes, quality)
    return login, code, pos + LOGIN_TAIL.size


def _untimed_or_response(buf: bytes, start: int, end: int, base: dict[str, Any]) -> PackFrame:
    """Heartbeat / time sync and every response: an optional 6-byte time, the rest opaque
    (the GB/T 32960 body rule: a response keeps the request's time)."""
    time, pos = optional_time(buf, start, end)
    tail = buf[pos:end] or None
    return PackFrame(
        **base,
        time=time,
        tail=tail,
        tail_reason="response_data" if tail else None,
        tail_offset=pos if tail else None,
    )
