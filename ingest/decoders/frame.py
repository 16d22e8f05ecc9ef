"""``decode_frame``: one whole GB/T 32960.3 frame (either edition) to a ``Frame`` record.

Dispatch is on (start marker, command, response flag):

- the envelope is checked first (start, length, BCC: ``envelope.parse_envelope``);
- a command not defined for the edition is ``unknown_command``, except the platform-exchange
  custom commands 0xC0..0xFE, which are kept opaque;
- an encrypted data unit (RSA/AES/SM2/SM4, or any byte but 0x01) is kept opaque and flagged;
- a command packet (response flag 0xFE) must follow its layout, or ``FrameError``;
- a response may be empty, the 6-byte time only (the body rule), or an echo of the command's
  data unit (the 2016 Annex B reading, EMQX's login ack): the layout is tried, and what does
  not fit is kept as an opaque tail rather than rejected.

Only ``FrameError`` escapes, whatever the bytes; a stopped walk is not an error but a
``partial`` frame with a ``tail``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple

from ingest.decoders.commands import activation, control, login, params, session
from ingest.decoders.counts import find_miscount
from ingest.decoders.envelope import EDITION_2016, EDITION_2025, parse_envelope
from ingest.decoders.errors import BAD_FIELD, TRUNCATED, UNKNOWN_COMMAND, FrameError
from ingest.decoders.fields import Record, decode_time
from ingest.decoders.identity import ID_OFFSET, ID_SIZE, check_identity, vin_keyed
from ingest.decoders.realtime import BAD_SIGNATURE, walk_blocks
from ingest.decoders.registry import VEHICLE, Registry
from ingest.decoders.signature import Signature, decode_signature
from ingest.decoders.unit import FrameTimes, opaque_fields, optional_time, walk_fields

__all__ = ["COMMANDS", "CommandSpec", "Frame", "command_name", "decode_frame"]

RESPONSE_COMMAND: Final = 0xFE  # the response flag of a command (not a response) packet
CUSTOM_COMMANDS: Final = range(0xC0, 0xFF)

BodyDecode = Callable[[bytes, int, int], tuple[Record, int, str | None]]


@dataclass(frozen=True, slots=True)
class Frame(FrameTimes):
    """A decoded frame. ``body`` is the command's record (login, logout, ...), ``blocks`` the
    information blocks of real-time / reissue data in frame order, ``tail`` the undecoded
    rest of the data unit (``tail_reason`` says why)."""

    edition: int
    command: int
    response: int = RESPONSE_COMMAND
    vin: str = ""
    encryption: int = 0x01
    time: datetime | None = None
    body: Record | None = None
    blocks: tuple[Record, ...] = ()
    signature: Signature | None = None
    tail: bytes | None = None
    # Derived from where decoding stopped: informative, not part of equality.
    tail_reason: str | None = field(default=None, compare=False)
    tail_offset: int | None = field(default=None, compare=False)
    tail_detail: str = field(default="", compare=False)

    @property
    def is_response(self) -> bool:
        """A response packet (the response flag is not 0xFE)."""
        return self.response != RESPONSE_COMMAND

    @property
    def partial(self) -> bool:
        """Decoding stopped early: the tail holds bytes the decoder could not place."""
        return self.tail is not None and self.tail_reason not in ("encrypted", "custom_command")

    @property
    def signature_missing(self) -> bool:
        """A 2025 real-time / reissue command packet that carries no signature (Table 7 ends
        every such data unit with one): the data cannot be verified, so it is flagged."""
        return (
            self.edition == EDITION_2025
            and self.command in (0x02, 0x03)
            and self.response == RESPONSE_COMMAND
            and self.encryption == 0x01
            and self.signature is None
        )

    @property
    def command_name(self) -> str:
        """The contract name of the command (``command_name`` in JSON)."""
        return command_name(self.edition, self.command)


class CommandSpec(NamedTuple):
    """How a command's data unit is laid out."""

    name: str
    key: str | None  # JSON key of the body object
    timed: bool  # the data unit starts with the 6-byte time
    command_body: BodyDecode | None  # layout of a command packet (after the time)
    response_body: BodyDecode | None  # layout tried for a response longer than the time


_REALTIME: Final[BodyDecode] = lambda buf, off, end: (Record(), off, None)  # noqa: E731 - marker


def _specs(edition: int) -> dict[int, CommandSpec]:
    log = login.decode_2016 if edition == EDITION_2016 else login.decode_2025
    plist = params.decode_param_list(edition)
    specs = {
        0x01: CommandSpec("vehicle_login", "login", True, log, log),
        0x02: CommandSpec("realtime", None, True, _REALTIME, _REALTIME),
        0x03: CommandSpec("reissue", None, True, _REALTIME, _REALTIME),
        0x04: CommandSpec("vehicle_logout", "logout", True, *[session.decode_logout] * 2),
        0x05: CommandSpec(
            "platform_login", "platform_login", True, *[session.decode_platform_login] * 2
        ),
        0x06: CommandSpec("platform_logout", "platform_logout", True, *[session.decode_logout] * 2),
        0x07: CommandSpec("heartbeat", None, False, None, None),
        0x08: CommandSpec("time_sync", None, False, None, None),
        0x80: CommandSpec("query", "query", True, params.decode_query, plist),
        0x81: CommandSpec("set", "set", True, plist, plist),
        0x82: CommandSpec("control", "control", True, *[control.decode_control] * 2),
    }
    if edition == EDITION_2025:
        specs[0x09] = CommandSpec(
            "activation", "activation", True, *[activation.decode_activation] * 2
        )
        specs[0x0A] = CommandSpec(
            "activation_response",
            "activation_response",
            False,
            *[activation.decode_activation_response] * 2,
        )
        specs[0x0B] = CommandSpec(
            "key_exchange", "key_exchange", False, *[activation.decode_key_exchange] * 2
        )
    return specs


COMMANDS: Final = {EDITION_2016: _specs(EDITION_2016), EDITION_2025: _specs(EDITION_2025)}


def command_name(edition: int, command: int) -> str:
    """``command_name`` of the JSON contract; ``custom`` for 0xC0..0xFE, else ``unknown``."""
    spec = COMMANDS[edition].get(command)
    if spec is not None:
        return spec.name
    return "custom" if command in CUSTOM_COMMANDS else "unknown"


def _is_vin_char(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A


def decode_frame(data: bytes | bytearray | memoryview, *, registry: Registry = VEHICLE) -> Frame:
    """Decode one whole frame (start marker through BCC). Raises only ``FrameError``.

    ``registry`` chooses the information-type codecs (a fleet profile may add its vendor
    blocks; see ``Registry.extended``).
    """
    buf = data if type(data) is bytes else bytes(data)
    env = parse_envelope(buf)
    edition, command = env.edition, env.command
    if _is_vin_char(env.response):
        # GB 17691 / HJ 1239 (heavy-duty OBD) frames share "##" and the 24-byte header size,
        # but have no response flag: their VIN starts at byte 3. Decoding them as GB/T 32960
        # would produce a shifted VIN and garbage, so they are refused with a pointer.
        raise FrameError(
            BAD_FIELD,
            3,
            f"response flag {env.response:#04x} is a VIN character: "
            "probably a GB 17691 / HJ 1239 frame, not GB/T 32960",
        )
    vin = check_identity(buf[ID_OFFSET : ID_OFFSET + ID_SIZE], vin_keyed(command, env.response))
    base: dict[str, Any] = {
        "edition": edition,
        "command": command,
        "response": env.response,
        "vin": vin,
        "encryption": env.encryption,
    }
    start, end = 24, 24 + env.length
    spec = COMMANDS[edition].get(command)
    if spec is None:
        if command in CUSTOM_COMMANDS:
            return Frame(**base, **opaque_fields(buf, start, end, "custom_command"))
        raise FrameError(
            UNKNOWN_COMMAND, 2, f"command {command:#04x} is not defined in the {edition} edition"
        )
    if env.encrypted:
        return Frame(**base, **opaque_fields(buf, start, end, "encrypted"))
    is_response = env.response != RESPONSE_COMMAND
    try:
        return _decode_unit(buf, start, end, spec, base, is_response, registry)
    except FrameError as exc:
        if not is_response:
            raise
        return _response_fallback(buf, start, end, spec, base, exc)


def _decode_unit(
    buf: bytes,
    start: int,
    end: int,
    spec: CommandSpec,
    base: dict[str, Any],
    is_response: bool,
    registry: Registry,
) -> Frame:
    pos = start
    time = None
    if spec.timed:
        if is_response and pos == end:
            return Frame(**base)  # an ack without data unit
        if end - pos < 6:
            raise FrameError(
                TRUNCATED, pos, f"{spec.name}: {end - pos} data-unit bytes, the time needs 6"
            )
        time = decode_time(buf, pos)
        pos += 6
    elif spec.command_body is None and end - pos == 6:
        # Heartbeat / time-sync replies often carry the (platform's) time (EMQX); six other
        # bytes stay an opaque tail.
        try:
            time = decode_time(buf, pos)
            pos += 6
        except FrameError:
            pass
    if spec.command_body is _REALTIME:
        edition = base["edition"]
        walk = walk_blocks(buf, pos, end, start, edition, registry)
        if walk.tail_start is not None and walk.counted:

            def clean(at: int) -> bool:
                # A recount over blocks_per_frame does not line up there (as native).
                try:
                    rest = walk_blocks(buf, at, end, start, edition, registry)
                except FrameError:
                    return False
                return rest.tail_start is None

            miscount = find_miscount(buf, walk.counted, end, edition, clean)
            if miscount is not None:
                raise miscount
        return Frame(**base, time=time, **walk_fields(buf, walk))
    decoder = spec.response_body if is_response else spec.command_body
    body = None
    reason = None
    signature = None
    if decoder is not None and (pos < end or not is_response):
        body, pos, reason = decoder(buf, pos, end)
        if isinstance(body, activation.Activation) and reason is None:
            signature, pos, reason = _activation_signature(buf, pos, end, start)
    tail = None
    detail = ""
    if pos < end:
        tail = buf[pos:end]
        reason = reason or "trailing_bytes"
        detail = f"{end - pos} bytes after the {spec.name} data"
    return Frame(
        **base,
        time=time,
        body=body,
        signature=signature,
        tail=tail,
        tail_reason=reason if tail is not None else None,
        tail_offset=pos if tail is not None else None,
        tail_detail=detail,
    )


def _activation_signature(
    buf: bytes, pos: int, end: int, start: int
) -> tuple[Signature | None, int, str | None]:
    """Table B.3: the signature (Table 8, *without* a 0xFF marker) runs to the end and signs
    time .. VIN. Older rtm_con vectors put a 0xFF marker before it; accept that too."""
    for at in (pos, pos + 1) if buf[pos : pos + 1] == b"\xff" else (pos,):
        try:
            signature, after = decode_signature(buf, at, end, start, pos)
        except FrameError:
            continue
        if after == end:
            return signature, end, None
    return None, pos, BAD_SIGNATURE


def _response_fallback(
    buf: bytes, start: int, end: int, spec: CommandSpec, base: dict[str, Any], exc: FrameError
) -> Frame:
    """A response whose data unit is neither time-only nor the command's layout: keep the
    time when it is one, and the rest as an opaque tail."""
    time, pos = None, start
    if spec.timed or spec.command_body is None:
        time, pos = optional_time(buf, start, end)
    tail = buf[pos:end] or None
    return Frame(
        **base,
        time=time,
        tail=tail,
        tail_reason=exc.reason if tail else None,
        tail_offset=pos if tail else None,
        tail_detail=exc.detail,
    )
