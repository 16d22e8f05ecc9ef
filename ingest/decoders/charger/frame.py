"""The charger profile on ``nev.charger.raw``: one whole frame <-> a ``ChargerFrame``.

The envelope is GB/T 32960's, checked by the vehicle codec's own ``parse_envelope`` (start
marker, length, BCC) and written with its ``HEADER``; only what differs lives here: the
identity rule of the 17-byte ID (``charger_id``: OperatorID + pile code), the command set and
the bodies and blocks of docs/protocols/charger.md. Pure: bytes in, a record or
``FrameError`` out; nothing else escapes, whatever the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final

from ingest.decoders.charger.blocks import (
    BLOCKS,
    ENTRY_SIZE,
    ConnectorEntry,
    code_string,
    decode_entry,
    encode_entry,
    opt_code_string,
)
from ingest.decoders.envelope import EDITION_2016, encode_envelope, parse_envelope
from ingest.decoders.errors import (
    BAD_FIELD,
    BAD_IDENTITY,
    BAD_START,
    OVER_LIMIT,
    TRUNCATED,
    UNKNOWN_COMMAND,
    FrameError,
)
from ingest.decoders.fields import TIME, Record, decode_time, encode_time, need
from ingest.decoders.identity import ID_OFFSET, ID_SIZE, check_identity
from ingest.decoders.text import encode_text
from ingest.decoders.unit import FrameTimes

__all__ = [
    "CHARGER_BLOCKS_PER_FRAME",
    "COMMANDS",
    "ChargerFrame",
    "ChargerLogin",
    "ChargerLogout",
    "decode_charger_frame",
    "encode_charger_frame",
]

RESPONSE_COMMAND: Final = 0xFE
LOGIN, REALTIME, REISSUE, LOGOUT, HEARTBEAT, TIME_SYNC = 0x01, 0x02, 0x03, 0x04, 0x07, 0x08
COMMANDS: Final = {
    LOGIN: "charger_login",
    REALTIME: "realtime",
    REISSUE: "reissue",
    LOGOUT: "charger_logout",
    HEARTBEAT: "heartbeat",
    TIME_SYNC: "time_sync",
}
_TIMED: Final = frozenset({LOGIN, REALTIME, REISSUE, LOGOUT})
OPERATOR_ID_SIZE: Final = 9
STATION_ID_SIZE: Final = 20
EQUIPMENT_ID_SIZE: Final = 23
_OPERATOR_BYTES: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PRINTABLE: Final = frozenset(range(0x21, 0x7F))
_SEQ: Final = struct.Struct(">H")
# The input limit ``charger_blocks_per_frame`` (docs/security.md, "Input limits"; repeated as
# ingest.config.limits.CHARGER_BLOCKS_PER_FRAME, a test keeps them equal): the vehicles'
# blocks_per_frame (64) guards against 64 KiB of 3- to 5-byte blocks, but a charger block is
# at least 28 bytes (a data unit holds at most 2,340) and one block per connector and type is
# what a pile sends: 22 connectors with status, output and demand are 66 blocks, and a login
# registers up to 255 connectors. So the most a real frame carries: 255 connectors x the five
# types + the pile's fault block. The native walk (native/src/error.rs, the same number) hands
# a frame over it to this one, which rejects it.
CHARGER_BLOCKS_PER_FRAME: Final = 255 * 5 + 1


@dataclass(frozen=True, slots=True)
class ChargerLogin(Record):
    """0x01 body: the charger's full T/CEC identity and its connectors."""

    name: ClassVar[str] = "login"
    login_seq: int
    station_id: str | None
    equipment_id: str
    connectors: tuple[ConnectorEntry, ...]


@dataclass(frozen=True, slots=True)
class ChargerLogout(Record):
    """0x04 body."""

    name: ClassVar[str] = "logout"
    logout_seq: int


@dataclass(frozen=True, slots=True)
class ChargerFrame(FrameTimes):
    """A decoded charger frame. ``tail`` holds an encrypted data unit, or the bytes of a
    response after its time, opaque."""

    command: int
    charger_id: str
    response: int = RESPONSE_COMMAND
    encryption: int = 0x01
    time: datetime | None = None
    body: Record | None = None
    blocks: tuple[Record, ...] = ()
    tail: bytes | None = None

    @property
    def operator_id(self) -> str:
        """The T/CEC OperatorID: the first 9 characters of the header code."""
        return self.charger_id[:OPERATOR_ID_SIZE]


def check_charger_id(raw: bytes) -> str:
    """The header code of a charger command packet: OperatorID (9 digits / upper-case
    letters) + pile code (8 printable ASCII), no padding; else ``bad_identity``."""
    for i, b in enumerate(raw):
        ok = b in _OPERATOR_BYTES if i < OPERATOR_ID_SIZE else b in _PRINTABLE
        if not ok:
            rule = "OperatorID is 9 digits / upper-case letters" if i < 9 else "pile code"
            raise FrameError(
                BAD_IDENTITY,
                ID_OFFSET + i,
                f"charger ID byte {b:#04x} at position {i + 1}: {rule} (17 characters)",
            )
    return raw.decode("ascii")


def decode_charger_frame(frame: bytes | bytearray | memoryview) -> ChargerFrame:
    """Decode one whole frame of the charger profile; raise ``FrameError`` if rejected."""
    buf = bytes(frame)
    env = parse_envelope(buf)
    if env.edition != EDITION_2016:
        raise FrameError(BAD_START, 0, "the charger profile uses the '##' envelope")
    command, response = env.command, env.response
    if command not in COMMANDS:
        raise FrameError(UNKNOWN_COMMAND, 2, f"command {command:#04x} is not a charger command")
    raw_id = buf[ID_OFFSET : ID_OFFSET + ID_SIZE]
    is_command = response == RESPONSE_COMMAND
    if is_command and command in _TIMED:
        charger_id = check_charger_id(raw_id)
    else:
        charger_id = check_identity(raw_id, vin=False)
    off, end = 24, 24 + env.length
    if env.encrypted:
        return ChargerFrame(command, charger_id, response, env.encryption, tail=buf[off:end])
    if not is_command:
        # A response: empty, the time only (the body rule of 6.3.2), or an echo kept opaque.
        t = decode_time(buf, off) if env.length >= TIME.size else None
        rest = buf[off + TIME.size : end] if t is not None else buf[off:end]
        return ChargerFrame(command, charger_id, response, time=t, tail=rest or None)
    if command not in _TIMED:
        if env.length:
            raise FrameError(BAD_FIELD, off, f"{COMMANDS[command]} has an empty data unit")
        return ChargerFrame(command, charger_id)
    need(off, TIME.size, end, "time")
    t = decode_time(buf, off)
    off += TIME.size
    body: Record | None = None
    blocks: list[Record] = []
    if command == LOGIN:
        body, off = _decode_login(buf, off, end)
    elif command == LOGOUT:
        need(off, 2, end, "logout")
        body, off = ChargerLogout(_SEQ.unpack_from(buf, off)[0]), off + 2
    else:
        while off < end:
            code = buf[off]
            codec = BLOCKS.get(code)
            if codec is None:
                # Every block but the fault list has a fixed size that only its type gives:
                # an unknown type cannot be skipped, and guessing would misread the rest.
                raise FrameError(BAD_FIELD, off, f"unknown information type {code:#04x}")
            start = off
            rec, off = codec.decode(buf, off + 1, end)
            blocks.append(rec)
            if len(blocks) > CHARGER_BLOCKS_PER_FRAME:
                raise _too_many_blocks(start)
    if off != end:
        raise FrameError(BAD_FIELD, off, f"{end - off} bytes after the {COMMANDS[command]} body")
    return ChargerFrame(command, charger_id, time=t, body=body, blocks=tuple(blocks))


def _too_many_blocks(at: int) -> FrameError:
    """The ``over_limit`` reject of a data unit whose block at ``at`` is one over
    ``CHARGER_BLOCKS_PER_FRAME``."""
    n = CHARGER_BLOCKS_PER_FRAME
    return FrameError(
        OVER_LIMIT,
        at,
        f"more than {n} information blocks is over the limit charger_blocks_per_frame ({n}): "
        "a pile of 255 connectors sends each of the five types once per connector "
        "(docs/security.md, Input limits)",
    )


def _decode_login(buf: bytes, off: int, end: int) -> tuple[ChargerLogin, int]:
    size = 2 + STATION_ID_SIZE + EQUIPMENT_ID_SIZE + 1
    if off + size > end:
        raise FrameError(TRUNCATED, off, f"login: need {size} bytes, {end - off} left")
    seq = _SEQ.unpack_from(buf, off)[0]
    p = off + 2
    station = opt_code_string(buf, p, STATION_ID_SIZE, "StationID")
    equipment = code_string(buf, p + STATION_ID_SIZE, EQUIPMENT_ID_SIZE, "EquipmentID")
    p += STATION_ID_SIZE + EQUIPMENT_ID_SIZE
    n = buf[p]
    if n == 0:
        raise FrameError(BAD_FIELD, p, "login: a charger has at least one connector")
    if p + 1 + n * ENTRY_SIZE > end:
        raise FrameError(BAD_FIELD, p, f"login: {n} connectors need {n * ENTRY_SIZE} bytes")
    p += 1
    entries = []
    for _ in range(n):
        entries.append(decode_entry(buf, p, end))
        p += ENTRY_SIZE
    return ChargerLogin(seq, station, equipment, tuple(entries)), p


def _encode_body(body: Record) -> bytes:
    if isinstance(body, ChargerLogin):
        if not 1 <= len(body.connectors) <= 255:
            raise ValueError(f"{len(body.connectors)} connectors: 1..255")
        return (
            _SEQ.pack(body.login_seq)
            + encode_text(body.station_id or "", STATION_ID_SIZE)
            + encode_text(body.equipment_id, EQUIPMENT_ID_SIZE)
            + bytes((len(body.connectors),))
            + b"".join(encode_entry(e) for e in body.connectors)
        )
    if isinstance(body, ChargerLogout):
        return _SEQ.pack(body.logout_seq)
    raise ValueError(f"{type(body).__name__} is no charger command body")


_TYPES: Final = {codec.record: code for code, codec in BLOCKS.items()}


def encode_charger_frame(frame: ChargerFrame) -> bytes:
    """The whole frame; ``decode_charger_frame(encode_charger_frame(f)) == f`` for every frame
    the decoder produces. Raises ``ValueError`` for what the wire cannot carry."""
    parts: list[bytes] = []
    if frame.time is not None:
        parts.append(encode_time(frame.time))
    if frame.body is not None:
        parts.append(_encode_body(frame.body))
    for rec in frame.blocks:
        code = _TYPES.get(type(rec))
        if code is None:
            raise ValueError(f"{type(rec).__name__} is no charger information block")
        parts.append(bytes((code,)) + BLOCKS[code].encode(rec))
    if frame.tail is not None:
        parts.append(frame.tail)
    unit = b"".join(parts)
    return encode_envelope(
        EDITION_2016, frame.command, frame.response, frame.charger_id, frame.encryption, unit
    )
