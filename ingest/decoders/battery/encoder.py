"""The pack profile's encoder: ``PackFrame`` -> bytes (tests, the future load generator).

``decode_pack_frame(encode_pack_frame(f)) == f`` for every frame the decoder produces
(hypothesis, tests/unit/test_battery_roundtrip.py). The header, BCC, time, text and block
encoders are the vehicle codec's; only the command bodies are new. Raises ``ValueError`` for
a frame the wire format cannot carry.
"""

from __future__ import annotations

import struct

from ingest.decoders.battery.blocks import BATTERY
from ingest.decoders.battery.frame import (
    LOGIN_HEAD,
    LOGIN_TAIL,
    PACK_COMMANDS,
    RESPONSE_COMMAND,
    PackFrame,
    PackLogin,
    PackLogout,
)
from ingest.decoders.encoder import encode_block
from ingest.decoders.envelope import encode_envelope, start_marker
from ingest.decoders.fields import encode_time
from ingest.decoders.pack_code import CODE_LENGTH
from ingest.decoders.signature import SIGNATURE_MARKER, encode_signature
from ingest.decoders.text import encode_text

__all__ = ["encode_pack_frame", "pack_ident"]


def pack_ident(pack_code: str) -> str:
    """The header ID of a pack's frames: positions 8-24 of its code."""
    return pack_code[7:]


def encode_pack_frame(frame: PackFrame) -> bytes:
    """The whole frame: header, data unit and BCC."""
    ed = frame.edition
    start_marker(ed)
    parts: list[bytes] = []
    if frame.time is not None:
        parts.append(encode_time(frame.time))
    keyed = frame.response == RESPONSE_COMMAND and frame.command in PACK_COMMANDS
    if keyed and not frame.encrypted:
        if frame.pack_code is None or len(frame.pack_code) != CODE_LENGTH:
            raise ValueError(f"command {frame.command:#04x} needs a 24-character pack code")
        code = encode_text(frame.pack_code, CODE_LENGTH)
        body = frame.body
        if isinstance(body, PackLogin):
            parts.append(_login(body, code))
        elif isinstance(body, PackLogout):
            parts.append(struct.pack(">H", body.logout_seq) + code)
        else:
            parts.append(code)
            parts.extend(encode_block(ed, b, BATTERY) for b in frame.blocks)
            if frame.tail is not None:
                parts.append(frame.tail)  # a stopped walk's tail sits before the signature
            if frame.signature is not None:
                parts.append(bytes((SIGNATURE_MARKER,)) + encode_signature(frame.signature))
    elif frame.tail is not None:
        parts.append(frame.tail)
    unit = b"".join(parts)
    return encode_envelope(ed, frame.command, frame.response, frame.ident, frame.encryption, unit)


def _login(rec: PackLogin, code: bytes) -> bytes:
    original = encode_text(rec.original_code or "", CODE_LENGTH)
    tail = LOGIN_TAIL.write(
        [
            rec.rated_capacity_ah,
            rec.rated_energy_kwh,
            rec.nominal_voltage_v,
            rec.cell_count,
            rec.probe_count,
        ],
        rec.quality,
    )
    try:
        head = LOGIN_HEAD.pack(rec.login_seq, encode_text(rec.iccid, 20))
    except struct.error as exc:
        raise ValueError(f"pack login: {exc}") from None
    return head + code + original + tail
