"""What differs between the gateway's listeners: the device kind's identity rule, its raw topic
key, and whether it may carry enterprise-platform sessions.

Pure functions of a whole frame (the framer already checked start, length and BCC): the
identity rules are the decoders' own (``ingest.decoders.identity``, the charger and pack
profiles, docs/protocols/*.md "Identity"), so a frame the gateway accepts is one the pipeline
will key the same way.
"""

from __future__ import annotations

from typing import Final, Literal

from ingest.decoders.battery.frame import PACK_COMMANDS
from ingest.decoders.charger.frame import check_charger_id
from ingest.decoders.envelope import EDITION_2016, HEADER_SIZE, Envelope
from ingest.decoders.errors import BAD_START, FrameError
from ingest.decoders.identity import ID_OFFSET, ID_SIZE, check_identity, vin_keyed
from ingest.decoders.pack_code import CODE_LENGTH, PackCodeError, decode_pack_code

__all__ = ["KINDS", "GatewayKind", "identify", "record_key"]

GatewayKind = Literal["vehicle", "charger", "battery"]
KINDS: Final[tuple[GatewayKind, ...]] = ("vehicle", "charger", "battery")

_COMMAND: Final = 0xFE
_TIME: Final = 6
# Where a pack-keyed frame carries its full 24-character code, after the 6-byte time:
# login after its serial (2) and ICCID (20), logout after its serial (2), data frames first.
_PACK_CODE_AT: Final = {0x01: _TIME + 22, 0x02: _TIME, 0x03: _TIME, 0x04: _TIME + 2}


def identify(kind: GatewayKind, frame: bytes, env: Envelope) -> str:
    """The frame's identity by its kind's rule, or ``FrameError`` (``bad_identity`` at the
    first offending byte; ``bad_start`` for a 2025 ``$$`` frame on the charger listener)."""
    raw = frame[ID_OFFSET : ID_OFFSET + ID_SIZE]
    keyed = env.response == _COMMAND and env.command in PACK_COMMANDS
    if kind == "charger":
        if env.edition != EDITION_2016:
            raise FrameError(BAD_START, 0, "the charger profile uses the 2016 envelope (##)")
        return check_charger_id(raw) if keyed else check_identity(raw, False)
    if kind == "battery":
        return check_identity(raw, keyed)
    return check_identity(raw, vin_keyed(env.command, env.response))


def record_key(kind: GatewayKind, frame: bytes, env: Envelope, ident: str) -> bytes | None:
    """The raw topic's record key (docs/kafka.md): the VIN or code; a pack's full GB/T 34014
    code when the frame carries it (else its 17-character ID, so one pack still keys one
    way per frame type); None for an empty ID (heartbeats of terminals with no code)."""
    if kind == "battery" and env.response == _COMMAND and env.command in _PACK_CODE_AT:
        at = HEADER_SIZE + _PACK_CODE_AT[env.command]
        if at + CODE_LENGTH <= HEADER_SIZE + env.length:
            code = frame[at : at + CODE_LENGTH].decode("latin-1")
            try:
                decode_pack_code(code)
            except PackCodeError:
                pass  # the pipeline dead-letters it with the reason; key by the header ID
            else:
                return code.encode("ascii")
    return ident.encode("ascii") if ident else None
