"""The encoder: a ``Frame`` (or one block / body) back to bytes, for the load generator, the
tests and a future gateway's responses.

``decode_frame(encode_frame(f)) == f`` for every frame the decoder can produce (checked by
hypothesis). Encoding raises ``ValueError`` for records the wire format cannot carry (a value
that does not fit its field, a data unit over 65531 bytes, a year outside 2000..2099).
Sentinels: ``None`` is written as the invalid code, or the abnormal one when the record's
``quality`` names the field "abnormal".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, Final

from ingest.decoders.blocks.custom import CustomBlock, encode_custom
from ingest.decoders.commands import activation, control, login, params, session
from ingest.decoders.envelope import EDITION_2016, EDITION_2025, encode_envelope, start_marker
from ingest.decoders.fields import Record, encode_time
from ingest.decoders.frame import RESPONSE_COMMAND, Frame
from ingest.decoders.registry import VEHICLE, Registry
from ingest.decoders.signature import SIGNATURE_MARKER, encode_signature

__all__ = ["encode_block", "encode_body", "encode_frame", "make_response"]

_REALTIME: Final = (0x02, 0x03)

_BODY: Final[dict[tuple[int, type[Record]], Callable[[Any], bytes]]] = {}
for _ed in (EDITION_2016, EDITION_2025):
    _BODY[(_ed, login.Login)] = login.encode_2016 if _ed == EDITION_2016 else login.encode_2025
    _BODY[(_ed, session.Logout)] = session.encode_logout
    _BODY[(_ed, session.PlatformLogin)] = session.encode_platform_login
    _BODY[(_ed, params.QueryRequest)] = params.encode_query
    _BODY[(_ed, params.ParamList)] = partial(params.encode_param_list, _ed)
    _BODY[(_ed, control.Control)] = control.encode_control
for _cls, _fn in (
    (activation.Activation, activation.encode_activation),
    (activation.ActivationResponse, activation.encode_activation_response),
    (activation.KeyExchange, activation.encode_key_exchange),
):
    _BODY[(EDITION_2025, _cls)] = _fn


def encode_block(edition: int, rec: Record, registry: Registry = VEHICLE) -> bytes:
    """One information block: type byte + body."""
    if isinstance(rec, CustomBlock):
        return encode_custom(rec)
    try:
        code = registry.type_of(edition, rec)
    except KeyError:
        raise ValueError(f"{type(rec).__name__} has no type code in {edition}") from None
    codec = registry.get(edition, code)
    assert codec is not None  # type_of and get come from the same table
    return bytes((code,)) + codec.encode(rec)


def encode_body(edition: int, body: Record) -> bytes:
    """A command body (after the time), e.g. a ``Login`` of the given edition."""
    fn = _BODY.get((edition, type(body)))
    if fn is None:
        raise ValueError(f"{type(body).__name__} is not a command body of the {edition} edition")
    return fn(body)


def encode_frame(frame: Frame, *, registry: Registry = VEHICLE) -> bytes:
    """The whole frame: header, data unit and BCC."""
    ed = frame.edition
    start_marker(ed)
    parts: list[bytes] = []
    if frame.time is not None:
        parts.append(encode_time(frame.time))
    if frame.body is not None:
        parts.append(encode_body(ed, frame.body))
    parts.extend(encode_block(ed, b, registry) for b in frame.blocks)
    realtime = frame.command in _REALTIME
    if realtime and frame.tail is not None:
        parts.append(frame.tail)  # a stopped walk's tail sits before the signature
    if frame.signature is not None:
        if realtime:
            parts.append(bytes((SIGNATURE_MARKER,)))
        parts.append(encode_signature(frame.signature))
    if not realtime and frame.tail is not None:
        parts.append(frame.tail)
    unit = b"".join(parts)
    return encode_envelope(ed, frame.command, frame.response, frame.vin, frame.encryption, unit)


def make_response(frame: Frame, result: int = 0x01, *, time: datetime | None = None) -> Frame:
    """The platform's answer to a command frame, by the body rule (6.3.2 of both editions):
    same command and VIN, response flag ``result``, the request's time kept and the rest of
    the data unit deleted. ``time`` replaces it (a time-sync reply carries the platform's
    clock; the decoders never read the clock themselves)."""
    if frame.response != RESPONSE_COMMAND:
        raise ValueError("a response is never answered (6.3.2)")
    return Frame(
        edition=frame.edition,
        command=frame.command,
        response=result,
        vin=frame.vin,
        encryption=0x01,
        time=time if time is not None else frame.time,
    )
