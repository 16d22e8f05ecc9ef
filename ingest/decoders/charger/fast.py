"""The charger profile's fast path: one frame, or a batch of frames, to the rows of
``contract.charger``.

Real-time and reissue command packets -- nearly all the traffic -- are decoded by the native
extension (``nev_native``, native/src/charger.rs): the envelope checks, the header code,
ConnectorIDs, StartChargeSeqs and VINs, the five information types with their sentinels turned
into ``None``, the join by ConnectorID, and the rows built as the NamedTuples of
``contract.charger`` (a batch parses with the GIL released).

The walk is optimistic: at the first thing it does not place (an unknown type, a block that
overruns the data unit, a code outside T/CEC 102, a bad header code or identifier ...) the
native call answers ``None`` and the frame goes to the structured decoder
(``decode_charger_frame``), which returns its rows or raises its ``FrameError``. The structured
decoder is therefore the one judge of every reject (reason, offset and text), and the fast path
cannot disagree with it on one. Every other command (login, logout, heartbeat, responses,
encrypted data) is rare and goes the structured way too. tests/unit/test_charger_fast.py checks
both paths agree, field for field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from contract.charger import ChargerRows
from ingest.decoders.charger.blocks import OPERATOR_ID_SIZE
from ingest.decoders.charger.frame import decode_charger_frame
from ingest.decoders.charger.rows import merge_repeated, rows_of_charger_frame
from ingest.decoders.errors import FrameError
from ingest.decoders.native import nev_native

__all__ = ["decode_charger_rows", "decode_charger_rows_batch"]


def decode_charger_rows(
    frame: bytes | bytearray | memoryview, received_at: datetime | None = None
) -> ChargerRows:
    """One whole charger frame to rows; ``received_at`` goes into the telemetry rows.
    Raises ``FrameError`` only, with the structured decoder's reason and offset."""
    buf = frame if type(frame) is bytes else bytes(frame)
    rows = nev_native.decode_charger(buf, received_at)
    if rows is not None and not _foreign_order(rows):
        # The native walk makes a row per status / fault / order block (a block's codes as
        # sent): repeats of one connector are merged here, and a code sent twice kept once,
        # as rows_of_charger_frame does (rows.py says why).
        return merge_repeated(rows)
    return rows_of_charger_frame(decode_charger_frame(buf), received_at)


def _foreign_order(rows: ChargerRows) -> bool:
    """True when an order block's StartChargeSeq does not begin with the frame's OperatorID.
    The native walk (native/src/charger.rs) checks only its length; the structured decoder
    refuses such a frame (``bad_field``, blocks.py), so it is handed over to say so. Orders
    are one block in a few: the check costs a few string compares per frame."""
    op = rows.operator_id
    return any(s.start_charge_seq[:OPERATOR_ID_SIZE] != op for s in rows.sessions)


def decode_charger_rows_batch(
    values: Sequence[bytes], received_ms: Sequence[int]
) -> list[ChargerRows | FrameError]:
    """Charger frames to rows in input order, one native call for the batch; a rejected
    frame is its ``FrameError`` (an instance, not raised). ``received_ms`` is each frame's
    gateway receive time (epoch ms, UTC), its telemetry rows' ``received_at``."""
    decoded = nev_native.decode_charger_batch(values, received_ms)
    for i, native in enumerate(decoded):
        if native is None:  # the native walk returns rows or None, never a FrameError
            continue
        if native.sessions and _foreign_order(native):
            decoded[i] = None  # the structured decoder rejects it (see _foreign_order)
        elif len(native.statuses) > 1 or native.faults or len(native.sessions) > 1:
            # A row per status / fault / order block from the native walk, each block's codes
            # as sent: repeats of one connector merged, and a code sent twice kept once, as
            # rows_of_charger_frame does (rows.py). Tested first: most frames have none.
            merge_repeated(native)
    if None not in decoded:  # the usual batch: every frame the native walk's own
        return cast("list[ChargerRows | FrameError]", decoded)
    out: list[ChargerRows | FrameError] = []
    for buf, ms, rows in zip(values, received_ms, decoded, strict=True):
        if rows is None:
            try:
                received_at = datetime.fromtimestamp(ms / 1000, UTC)
                rows = rows_of_charger_frame(decode_charger_frame(buf), received_at)
            except FrameError as exc:
                out.append(exc)
                continue
        out.append(rows)
    return out
