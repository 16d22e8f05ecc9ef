"""The fast path: GB/T 32960 frames to flat, typed rows (``contract.rows``), in native code.

The pipeline needs rows for the database writer and the rule engine, not a structured
document, so real-time and reissue data -- nearly all the traffic -- go straight from bytes
to rows in the compiled module ``nev_native`` (native/src: envelope, VIN, frame time, the
edition's block walk, sentinels to ``None``, scaling, every reject reason), one call per batch
with the GIL released, which also writes each frame's binary COPY tuples (``FrameRows.copy``)
for the storage writer. Every other frame (login, logout, heartbeat, responses, platform and
parameter commands, encrypted or custom data) is rare, so it goes through the structured
decoder (``decode_frame``) and only its envelope and session fields become rows: one set of
rules for those, and the same answers by construction.

    rows = decode_rows(frame, received_at)
    rows.vehicle   # VehicleRow for real-time (0x02) / reissue (0x03) data
    rows.motors, rows.packs, rows.alarm
    rows.session   # SessionRow for vehicle login (0x01) / logout (0x04)
    results = decode_rows_batch(values, received_ms)   # FrameRows | FrameError per value

A frame whose blocks cannot all be walked (a type of unknown length, a custom WORD length or
a count overrunning the data unit) keeps every row decoded before that block, with
``partial`` and ``tail_offset`` set -- unless a smaller motor / pack count explains the stop,
then the frame is rejected (``count_mismatch``); encrypted frames give the envelope
(``encrypted``). A 2025 data unit without its signature sets ``signature_missing``. The ID
must be a VIN, else ``bad_identity``. The native path agrees with ``decode_frame`` field for
field, errors included (tests/unit/test_native_agreement.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from contract.rows import FrameRows, SessionRow
from ingest.decoders.commands.login import Login
from ingest.decoders.commands.session import Logout
from ingest.decoders.errors import FrameError
from ingest.decoders.frame import Frame, decode_frame
from ingest.decoders.native import nev_native

__all__ = ["RowLimits", "decode_rows", "decode_rows_batch", "rows_of_frame"]

# Row limits the native decoder counts before it builds a frame's rows: the most drive motors,
# pack rows, cell voltages and probe temperatures a frame may have, and the function that makes
# the error of a frame over one, from the limit's name (motors_per_frame, pack_rows_per_frame,
# cells_per_frame, probes_per_frame) and the count (native/src/vehicle/limits.rs).
RowLimits = tuple[int, int, int, int, Callable[[str, int], FrameError]]

_COMMAND: Final = 0xFE  # response flag of a command packet (anything else is a response)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_decode_batch: Final = nev_native.decode_vehicle_batch


def decode_rows(
    frame: bytes | bytearray | memoryview, received_at: datetime | None = None
) -> FrameRows:
    """Decode one whole frame (start marker through BCC) into rows; ``received_at`` (the
    gateway's receive time, aware) is copied into the vehicle row. Raises ``FrameError`` only.

    One frame per native call: the batch form (``decode_rows_batch``) is the fast one."""
    buf = frame if type(frame) is bytes else bytes(frame)
    ms: int | None = None
    exact = True
    if received_at is not None:
        us = (received_at - _EPOCH) // _US
        ms, exact = us // 1000, us % 1000 == 0
    out = _decode_batch((buf,), (ms,))[0]
    if out is None:
        return rows_of_frame(decode_frame(buf))
    if isinstance(out, FrameError):
        raise out
    if received_at is not None and out.vehicle is not None:
        # The caller's object as given (its zone, its microseconds); the COPY tuples carry
        # whole milliseconds, so a finer time leaves the writer to encode the rows itself.
        out.vehicle = out.vehicle._replace(received_at=received_at)
        if not exact:
            out.copy = None
    return out


def decode_rows_batch(
    values: Sequence[bytes], received_ms: Sequence[int | None], limits: RowLimits | None = None
) -> list[FrameRows | FrameError]:
    """Decode a batch of whole frames in one native call: per value, in order, its rows or the
    ``FrameError`` that rejects it (returned, not raised). ``received_ms[i]`` is the gateway
    receive time of ``values[i]`` (epoch ms, UTC), which becomes ``VehicleRow.received_at``
    (``datetime.fromtimestamp(ms / 1000, UTC)``). Values must be ``bytes``. ``limits``: a
    frame over one of these counts gets the error ``limits``' function makes instead of rows
    (``RowLimits``)."""
    out = _decode_batch(values, received_ms, limits)
    for i, item in enumerate(out):
        if item is None:
            # Not plain real-time / reissue data: the structured decoder's (it names the
            # exact error of a bad envelope).
            try:
                out[i] = rows_of_frame(decode_frame(values[i]))
            except FrameError as exc:
                out[i] = exc
    return out  # type: ignore[return-value]  # every None was replaced just above


def rows_of_frame(frame: Frame) -> FrameRows:
    """The rows of a structured frame that is not real-time / reissue data: the envelope, and
    the session row of a vehicle login or logout (command packets only: an ack is no login)."""
    session = None
    body = frame.body
    if frame.time is not None and frame.response == _COMMAND:
        if isinstance(body, Login):
            values = (
                frame.vin,
                frame.time,
                "login",
                body.login_seq,
                body.iccid,
                list(body.pack_codes),
            )
            session = tuple.__new__(SessionRow, values)
        elif isinstance(body, Logout):
            out: tuple[object, ...] = (frame.vin, frame.time, "logout", body.logout_seq, None, [])
            session = tuple.__new__(SessionRow, out)
    partial = frame.partial
    return FrameRows(
        edition=frame.edition,
        command=frame.command,
        vin=frame.vin,
        ts_ms=frame.ts_ms,
        encrypted=frame.encrypted,
        partial=partial,
        session=session,
        response=frame.response,
        tail_offset=frame.tail_offset if partial else None,
        signature_missing=frame.signature_missing,
    )
