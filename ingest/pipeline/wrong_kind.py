"""Frames of another profile on the vehicle topic (``wrong_topic``).

The three binary profiles share the GB/T 32960 envelope, so a charger's or a battery pack's
frame produced to the vehicle topic by mistake passes the vehicle decoder's envelope checks: its
blocks are then read as vehicle blocks, and the walk stops at the first one that does not fit
(a ``partial`` frame), after inventing a vehicle row out of a connector's status. The charger
and pack topics need no such check: their decoders refuse a vehicle frame on their own
(``bad_field``, ``bad_start``, ``bad_identity``).

Only partial vehicle frames are tried (a few in a thousand of real traffic: vendor blocks), so
the frames that decode whole pay nothing. A partial frame is another profile's when that
profile's decoder reads it whole and gets rows out of it; a vehicle frame with a vendor block
does not decode as either profile (the public vectors' partial frames, tests/unit/test_limits.py).
"""

from __future__ import annotations

from typing import Final

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from ingest.decoders.errors import FrameError
from ingest.pipeline.adapters import decode_battery_batch, decode_charger_batch

__all__ = ["WRONG_TOPIC", "other_profile"]

WRONG_TOPIC: Final = "wrong_topic"


def _charger_rows(rows: object) -> bool:
    return isinstance(rows, ChargerRows) and bool(
        rows.connectors or rows.statuses or rows.telemetry or rows.sessions or rows.faults
    )


def _pack_rows(rows: object) -> bool:
    return (
        isinstance(rows, PackFrameRows)
        and not rows.partial
        and (rows.telemetry is not None or rows.alarm is not None or rows.session is not None)
    )


def other_profile(value: bytes, received_ms: int) -> FrameError | None:
    """The ``wrong_topic`` error of a partial vehicle frame that is a charger's or a battery
    pack's frame, or None when it is neither."""
    (charger,) = decode_charger_batch([value], [received_ms])
    if _charger_rows(charger):
        return FrameError(
            WRONG_TOPIC,
            0,
            "a charger-profile frame on the vehicle topic: produce it to kafka.topic_charger",
        )
    (pack,) = decode_battery_batch([value], [received_ms])
    if _pack_rows(pack):
        return FrameError(
            WRONG_TOPIC,
            0,
            "a battery-pack-profile frame on the vehicle topic: produce it to kafka.topic_battery",
        )
    return None
