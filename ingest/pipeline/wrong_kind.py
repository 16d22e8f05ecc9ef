"""Frames of another profile on the vehicle topic (``wrong_topic``).

The three binary profiles share the GB/T 32960 envelope, so a charger's or a battery pack's
frame produced to the vehicle topic by mistake passes the vehicle decoder's envelope checks: its
blocks are then read as vehicle blocks, and the walk stops at the first one that does not fit
(a ``partial`` frame), after inventing a vehicle row out of a connector's status. The charger
and pack topics need no such check: their decoders refuse a vehicle frame on their own
(``bad_field``, ``bad_start``, ``bad_identity``).

Only partial vehicle frames are tried (a few in a thousand of real traffic: vendor blocks), so
the frames that decode whole pay nothing. A partial frame is another profile's when that
profile's decoder gets rows out of it and reads it whole, or reads further into it than the
vehicle decoder, which read no block at all (a pack's frame with a vendor block of its own:
else its pack would be stored as a vehicle with every value NULL, and its own data lost); a
vehicle frame with a vendor block does not decode as either profile (the public vectors'
partial frames, tests/unit/test_limits.py).
"""

from __future__ import annotations

from typing import Final

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from ingest.decoders.envelope import HEADER_SIZE
from ingest.decoders.errors import FrameError
from ingest.pipeline.adapters import decode_battery_batch, decode_charger_batch

__all__ = ["WRONG_TOPIC", "other_profile", "profile_of"]

WRONG_TOPIC: Final = "wrong_topic"


def _charger_rows(rows: object) -> bool:
    return isinstance(rows, ChargerRows) and bool(
        rows.connectors or rows.statuses or rows.telemetry or rows.sessions or rows.faults
    )


# Where a vehicle walk that read no block stops: after the header and the frame time (6 bytes).
_NO_BLOCK: Final = HEADER_SIZE + 6


def _pack_rows(rows: object, vehicle_stop: int | None) -> bool:
    if not isinstance(rows, PackFrameRows):
        return False
    if rows.telemetry is None and rows.alarm is None and rows.session is None:
        return False
    if not rows.partial:
        return True
    stop = rows.tail_offset
    return vehicle_stop == _NO_BLOCK and stop is not None and stop > vehicle_stop


def profile_of(value: bytes, received_ms: int, vehicle_stop: int | None = None) -> str | None:
    """The entity kind (``charger``, ``battery``) whose profile a partial vehicle frame is, or
    None when it is neither; ``vehicle_stop``: where the vehicle walk stopped
    (``FrameRows.tail_offset``). ``nev-ingest rules test`` names the kind with it."""
    (charger,) = decode_charger_batch([value], [received_ms])
    if _charger_rows(charger):
        return "charger"
    (pack,) = decode_battery_batch([value], [received_ms])
    if _pack_rows(pack, vehicle_stop):
        return "battery"
    return None


def other_profile(
    value: bytes, received_ms: int, vehicle_stop: int | None = None
) -> FrameError | None:
    """The ``wrong_topic`` error of a partial vehicle frame that is a charger's or a battery
    pack's frame, or None when it is neither (``profile_of``)."""
    kind = profile_of(value, received_ms, vehicle_stop)
    if kind == "charger":
        return FrameError(
            WRONG_TOPIC,
            0,
            "a charger-profile frame on the vehicle topic: produce it to kafka.topic_charger",
        )
    if kind == "battery":
        return FrameError(
            WRONG_TOPIC,
            0,
            "a battery-pack-profile frame on the vehicle topic: produce it to kafka.topic_battery",
        )
    return None
