"""The 2025 security messages (Annex B Tables B.3, B.4 and Table 31).

0x09 activation (after the time): chip_id STRING16 (space-padded); public key length WORD
     + key; vin STRING17; signature (Table 8 without the 0xFF marker) to the end.
0x0A activation response (no time): status BYTE (0x01 success, 0x02 failure);
     info BYTE (0x00 success, 0x01 chip already activated, 0x02 VIN duplicate).
0x0B key exchange (no time): key_type BYTE (0x02 RSA, 0x03 AES, 0x04 SM2, 0x05 SM4);
     key length WORD + key; valid_from time(6); valid_until time(6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final

from ingest.decoders.codec import need_items
from ingest.decoders.fields import Record, decode_time, encode_time, need
from ingest.decoders.text import decode_text, encode_text

__all__ = [
    "Activation",
    "ActivationResponse",
    "KeyExchange",
    "decode_activation",
    "decode_activation_response",
    "decode_key_exchange",
    "encode_activation",
    "encode_activation_response",
    "encode_key_exchange",
]

_U16: Final = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class Activation(Record):
    """A security-chip activation; the signature is the frame's ``signature``."""

    name: ClassVar[str] = "activation"
    chip_id: str = ""
    public_key: bytes = b""
    vin: str = ""


@dataclass(frozen=True, slots=True)
class ActivationResponse(Record):
    """The platform's answer to an activation."""

    name: ClassVar[str] = "activation_response"
    status: int = 0x01
    info: int = 0x00


@dataclass(frozen=True, slots=True)
class KeyExchange(Record):
    """A data-unit encryption key and its validity window."""

    name: ClassVar[str] = "key_exchange"
    key_type: int
    key: bytes
    valid_from: datetime
    valid_until: datetime


def decode_activation(buf: bytes, off: int, end: int) -> tuple[Activation, int, str | None]:
    need(off, 18, end, "activation")
    chip = decode_text(buf[off : off + 16])
    (key_len,) = _U16.unpack_from(buf, off + 16)
    off += 18
    need_items(off, key_len + 17, 1, end, "activation public key")
    key = buf[off : off + key_len]
    vin = decode_text(buf[off + key_len : off + key_len + 17])
    return Activation(chip, key, vin), off + key_len + 17, None


def encode_activation(rec: Activation) -> bytes:
    if len(rec.public_key) > 65531:
        raise ValueError("public key too long")
    return (
        encode_text(rec.chip_id, 16)
        + _U16.pack(len(rec.public_key))
        + rec.public_key
        + encode_text(rec.vin, 17)
    )


def decode_activation_response(
    buf: bytes, off: int, end: int
) -> tuple[ActivationResponse, int, str | None]:
    need(off, 2, end, "activation_response")
    return ActivationResponse(buf[off], buf[off + 1]), off + 2, None


def encode_activation_response(rec: ActivationResponse) -> bytes:
    return bytes((rec.status, rec.info))


def decode_key_exchange(buf: bytes, off: int, end: int) -> tuple[KeyExchange, int, str | None]:
    need(off, 3, end, "key_exchange")
    key_type = buf[off]
    (key_len,) = _U16.unpack_from(buf, off + 1)
    off += 3
    need_items(off, key_len + 12, 1, end, "key_exchange key")
    key = buf[off : off + key_len]
    off += key_len
    valid_from = decode_time(buf, off)
    valid_until = decode_time(buf, off + 6)
    return KeyExchange(key_type, key, valid_from, valid_until), off + 12, None


def encode_key_exchange(rec: KeyExchange) -> bytes:
    if len(rec.key) > 65531:
        raise ValueError("key too long")
    return (
        bytes((rec.key_type,))
        + _U16.pack(len(rec.key))
        + rec.key
        + encode_time(rec.valid_from)
        + encode_time(rec.valid_until)
    )
