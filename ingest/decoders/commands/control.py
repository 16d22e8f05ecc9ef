"""Terminal control (0x82): Annex B Tables B.14-B.17 (2016) / B.10-B.13 (2025).

After the time: command ID BYTE (exactly one) + parameters (depend on the ID; may be empty).

    0x01 remote upgrade        ``;``-separated (Table B.16 / B.12): APN; dial user; dial
                               password; address BYTE[6] (IPv4 in the last 4); port WORD;
                               manufacturer ID (4); hardware version (5); firmware version
                               (5); upgrade URL; connection time limit WORD (minutes).
                               An empty value is left empty.
    0x02 power off   0x03 reset   0x04 factory reset   0x05 disconnect
    0x06 alarm/warning         level BYTE (0 none, 1..3, 2025 also 4; 0xFF invalid) + info
    0x07 open the sampling-monitoring link
    0x80..0xFE user-defined

The parameters stay as bytes in the record (their layout is only a recommendation, and
byte-exact forwarding matters); ``upgrade`` and ``alarm`` parse them on demand.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.fields import Record, need
from ingest.decoders.text import decode_text, encode_text

__all__ = [
    "CONTROL_COMMANDS",
    "Control",
    "Upgrade",
    "decode_control",
    "encode_control",
    "encode_upgrade",
    "parse_upgrade",
]

CONTROL_COMMANDS: Final = {
    0x01: "upgrade",
    0x02: "power_off",
    0x03: "reset",
    0x04: "factory_reset",
    0x05: "disconnect",
    0x06: "alarm",
    0x07: "open_sampling_link",
}
_SEP: Final = b";"
_U16: Final = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class Upgrade(Record):
    """Remote-upgrade parameters (Table B.16 / B.12); ``None`` for an empty binary value."""

    name: ClassVar[str] = "upgrade"
    apn: str = ""
    user: str = ""
    password: str = ""
    address: bytes | None = None  # 6 bytes; IPv4 has 2 leading zero bytes
    port: int | None = None
    manufacturer_id: str = ""
    hardware_version: str = ""
    firmware_version: str = ""
    url: str = ""
    timeout_min: int | None = None


@dataclass(frozen=True, slots=True)
class Control(Record):
    """A control command (or its echo): the command ID and its raw parameters."""

    name: ClassVar[str] = "control"
    command_id: int = 0x02
    params: bytes = b""

    @property
    def upgrade(self) -> Upgrade | None:
        """The parsed upgrade parameters (command 0x01), or ``None``."""
        return parse_upgrade(self.params) if self.command_id == 0x01 else None

    @property
    def alarm(self) -> tuple[int | None, str] | None:
        """(level, information) of an alarm/warning command (0x06), or ``None``."""
        if self.command_id != 0x06 or not self.params:
            return None
        level = self.params[0]
        return (None if level == 0xFF else level), decode_text(self.params[1:])


def decode_control(buf: bytes, off: int, end: int) -> tuple[Control, int, str | None]:
    need(off, 1, end, "control command ID")
    return Control(buf[off], buf[off + 1 : end]), end, None


def encode_control(rec: Control) -> bytes:
    return bytes((rec.command_id,)) + rec.params


def _text(p: bytes, pos: int) -> tuple[str, int]:
    idx = p.find(_SEP, pos)
    if idx < 0:
        raise ValueError("missing ';'")
    return decode_text(p[pos:idx]), idx + 1


def _binary(p: bytes, pos: int, size: int, last: bool) -> tuple[bytes | None, int]:
    if pos >= len(p) or (not last and p[pos : pos + 1] == _SEP):
        return None, pos + (0 if last else 1)
    value = p[pos : pos + size]
    if len(value) != size:
        raise ValueError("short binary value")
    pos += size
    if not last:
        if p[pos : pos + 1] != _SEP:
            raise ValueError("missing ';' after a binary value")
        pos += 1
    return value, pos


def parse_upgrade(params: bytes) -> Upgrade | None:
    """Table B.16 / B.12, or ``None`` when the bytes do not follow it."""
    try:
        apn, pos = _text(params, 0)
        user, pos = _text(params, pos)
        password, pos = _text(params, pos)
        address, pos = _binary(params, pos, 6, last=False)
        port, pos = _binary(params, pos, 2, last=False)
        manufacturer, pos = _text(params, pos)
        hardware, pos = _text(params, pos)
        firmware, pos = _text(params, pos)
        url, pos = _text(params, pos)
        timeout, pos = _binary(params, pos, 2, last=True)
    except ValueError:
        return None
    if pos != len(params):
        return None
    return Upgrade(
        apn,
        user,
        password,
        address,
        None if port is None else _U16.unpack(port)[0],
        manufacturer,
        hardware,
        firmware,
        url,
        None if timeout is None else _U16.unpack(timeout)[0],
    )


def encode_upgrade(u: Upgrade) -> bytes:
    """The parameters of an upgrade command (the inverse of ``parse_upgrade``)."""
    if u.address is not None and len(u.address) != 6:
        raise ValueError("upgrade address must be 6 bytes")
    texts = (u.apn, u.user, u.password)
    parts = [encode_text(t) + _SEP for t in texts]
    parts.append((u.address or b"") + _SEP)
    parts.append((b"" if u.port is None else _U16.pack(u.port)) + _SEP)
    parts.extend(
        encode_text(t) + _SEP
        for t in (u.manufacturer_id, u.hardware_version, u.firmware_version, u.url)
    )
    parts.append(b"" if u.timeout_min is None else _U16.pack(u.timeout_min))
    return b"".join(parts)
