"""The T/CEC 102.4 envelope, sans I/O: sign, check, encrypt and open one request or answer.

A request body is ``{"OperatorID", "Data", "TimeStamp", "Seq", "Sig"}``: ``Data`` is
Base64(AES-128-CBC, PKCS#5 padding, key DataSecret, IV DataSecretIV) of the business JSON,
``Sig`` the upper-case hex HMAC-MD5 (key SigSecret) of OperatorID + Data + TimeStamp + Seq.
An answer is ``{"Ret", "Msg", "Data", "Sig"}``, its Data encrypted the same way and its Sig
over Ret + Msg + Data. Sources and choices: docs/gateway.md, "T/CEC 102 receiver".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import orjson
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ingest.decoders.charger import OPERATOR_ID_RULE, is_operator_id, is_seq

__all__ = [
    "Envelope",
    "EnvelopeError",
    "OperatorSecrets",
    "Ret",
    "answer",
    "decrypt",
    "encrypt",
    "open_data",
    "parse_envelope",
    "request",
    "sign",
    "verify",
]

KEY_SIZE: Final = 16  # AES-128: DataSecret and DataSecretIV are 16 characters each
TIMESTAMP_SIZE: Final = 14  # yyyyMMddHHmmss


class Ret(IntEnum):
    """The answer's return codes (T/CEC 102.4, "返回值")."""

    BUSY = -1  # system busy: retry later (here: Kafka did not acknowledge in time)
    OK = 0
    BAD_SIGNATURE = 4001
    BAD_TOKEN = 4002
    BAD_PARAMETER = 4003  # the POST parameters (the envelope) are missing or invalid
    BAD_BUSINESS = 4004  # the business parameters (the decrypted Data) are invalid
    SYSTEM_ERROR = 500


class EnvelopeError(Exception):
    """A request the receiver refuses: ``ret`` goes in the answer, the message in its Msg."""

    def __init__(self, ret: Ret, message: str) -> None:
        super().__init__(message)
        self.ret = ret


@dataclass(frozen=True, slots=True)
class OperatorSecrets:
    """One operator's four secrets (as the platform issued them); never printed."""

    operator_id: str
    operator_secret: str
    data_secret: str
    data_secret_iv: str
    sig_secret: str

    def __post_init__(self) -> None:
        for name in ("data_secret", "data_secret_iv"):
            if len(getattr(self, name).encode()) != KEY_SIZE:
                raise ValueError(
                    f"operator {self.operator_id}: {name} must be {KEY_SIZE} bytes (AES-128)"
                )
        if not self.sig_secret or not self.operator_secret:
            raise ValueError(
                f"operator {self.operator_id}: sig_secret and operator_secret are required"
            )

    def __repr__(self) -> str:
        return f"OperatorSecrets({self.operator_id!r}, ********)"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A request's five fields, as sent (Data still encrypted)."""

    operator_id: str
    data: str
    timestamp: str
    seq: str
    sig: str


def sign(secret: str, *parts: str) -> str:
    """Upper-case hex HMAC-MD5 of the concatenated parts."""
    text = "".join(parts).encode()
    return hmac.new(secret.encode(), text, hashlib.md5).hexdigest().upper()


def verify(secrets: OperatorSecrets, env: Envelope) -> None:
    """Raise ``EnvelopeError(BAD_SIGNATURE)`` unless Sig matches (constant-time compare)."""
    expected = sign(secrets.sig_secret, env.operator_id, env.data, env.timestamp, env.seq)
    if not hmac.compare_digest(expected.encode(), env.sig.upper().encode()):
        raise EnvelopeError(Ret.BAD_SIGNATURE, "Sig does not match: check SigSecret")


def _cipher(secrets: OperatorSecrets) -> Cipher[modes.CBC]:
    return Cipher(
        algorithms.AES(secrets.data_secret.encode()), modes.CBC(secrets.data_secret_iv.encode())
    )


def encrypt(secrets: OperatorSecrets, plain: bytes) -> str:
    """Base64 of AES-128-CBC with PKCS#5 (= PKCS#7 on 16-byte blocks) padding."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    enc = _cipher(secrets).encryptor()
    return base64.b64encode(enc.update(padded) + enc.finalize()).decode()


def decrypt(secrets: OperatorSecrets, data: str) -> bytes:
    """The plain bytes of ``Data``; ``EnvelopeError(BAD_PARAMETER)`` when it does not open."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(Ret.BAD_PARAMETER, "Data is not Base64") from None
    if not raw or len(raw) % 16:
        raise EnvelopeError(Ret.BAD_PARAMETER, "Data is not whole AES blocks: check DataSecret")
    dec = _cipher(secrets).decryptor()
    padded = dec.update(raw) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        # A wrong key or IV shows up here, as padding that is not PKCS#5.
        raise EnvelopeError(
            Ret.BAD_PARAMETER, "Data does not decrypt: check DataSecret and DataSecretIV"
        ) from None


def _text(doc: dict[str, Any], key: str) -> str:
    v = doc.get(key)
    if type(v) is int and key == "Seq":
        v = f"{v:04d}"  # some platforms send Seq as a number; the Sig is over its text
    if type(v) is not str or not v:
        raise EnvelopeError(Ret.BAD_PARAMETER, f"{key} is required (a non-empty string)")
    return v


def parse_envelope(body: bytes) -> Envelope:
    """The five fields of a request body; ``EnvelopeError(BAD_PARAMETER)`` for anything else."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise EnvelopeError(Ret.BAD_PARAMETER, "the body is not JSON") from None
    if type(doc) is not dict:
        raise EnvelopeError(Ret.BAD_PARAMETER, "the body is not a JSON object")
    env = Envelope(
        _text(doc, "OperatorID"),
        _text(doc, "Data"),
        _text(doc, "TimeStamp"),
        _text(doc, "Seq"),
        _text(doc, "Sig"),
    )
    if not is_operator_id(env.operator_id):  # upper case: see ingest.decoders.charger.tcec
        raise EnvelopeError(Ret.BAD_PARAMETER, f"OperatorID must be {OPERATOR_ID_RULE}")
    if (
        len(env.timestamp) != TIMESTAMP_SIZE
        or not env.timestamp.isascii()
        or not env.timestamp.isdigit()
    ):
        raise EnvelopeError(Ret.BAD_PARAMETER, "TimeStamp must be yyyyMMddHHmmss")
    if not is_seq(env.seq):  # the pipeline's own check (push_time): the two cannot differ
        raise EnvelopeError(Ret.BAD_PARAMETER, "Seq must be 4 digits")
    return env


def open_data(secrets: OperatorSecrets, env: Envelope) -> tuple[bytes, dict[str, Any]]:
    """The business JSON of a verified envelope: its bytes as sent, and the object they hold
    (``EnvelopeError(BAD_PARAMETER)`` when Data does not decrypt to a JSON object)."""
    plain = decrypt(secrets, env.data)
    try:
        doc = orjson.loads(plain)
    except orjson.JSONDecodeError:
        raise EnvelopeError(Ret.BAD_PARAMETER, "the decrypted Data is not JSON") from None
    if type(doc) is not dict:
        raise EnvelopeError(Ret.BAD_PARAMETER, "the decrypted Data is not a JSON object")
    return plain, doc


def request(secrets: OperatorSecrets, data: bytes, timestamp: str, seq: str) -> bytes:
    """A request body as an operator builds it (for clients and tests)."""
    enc = encrypt(secrets, data)
    sig = sign(secrets.sig_secret, secrets.operator_id, enc, timestamp, seq)
    return orjson.dumps(
        {
            "OperatorID": secrets.operator_id,
            "Data": enc,
            "TimeStamp": timestamp,
            "Seq": seq,
            "Sig": sig,
        }
    )


def answer(
    secrets: OperatorSecrets | None, ret: Ret, msg: str, data: dict[str, Any] | None
) -> bytes:
    """An answer body. Without the operator's secrets (unknown OperatorID) Data and Sig are
    empty: there is no key to encrypt or sign with."""
    enc = "" if secrets is None or data is None else encrypt(secrets, orjson.dumps(data))
    sig = "" if secrets is None else sign(secrets.sig_secret, str(int(ret)), msg, enc)
    return orjson.dumps({"Ret": int(ret), "Msg": msg, "Data": enc, "Sig": sig})
