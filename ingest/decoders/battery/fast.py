"""The pack profile's fast path: one frame, or a batch of frames, to flat rows
(``contract.battery``).

Real-time and reissue command packets -- nearly all the traffic -- are decoded by the native
extension (``nev_native``, native/src/battery.rs): the envelope, header ID, GB/T 34014 pack code
and time checks, the five information types, cell and probe arrays kept as the frame's own
bytes with their min/max, custom blocks skipped by their WORD length, and the
``PackTelemetryRow`` (+ ``PackAlarmRow``) built as the NamedTuples of ``contract.battery``
(a batch parses with the GIL released).

A frame whose identity, code or time the native checks do not pass, and every other command,
goes to the structured decoder (``decode_pack_frame``), which raises its exact error; login /
logout become a ``PackSessionRow``. When the native walk stops at a block it does not place
(an unknown type, an overrun, the 2025 signature) it keeps the rows of the blocks before it
and the structured decoder says whether the frame is partial (and from where) or rejected.
Raises only ``FrameError``; agrees with ``decode_pack_frame`` (tests/unit/test_battery_fast.py).

If a type repeats in one frame, the last one wins (in both decoders' rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from contract.battery import PackFrameRows, PackSessionRow
from ingest.decoders.battery.frame import (
    PackFrame,
    PackLogin,
    PackLogout,
    decode_pack_frame,
)
from ingest.decoders.errors import FrameError
from ingest.decoders.native import nev_native

__all__ = ["decode_pack_rows", "decode_pack_rows_batch", "rows_of_pack_frame"]


def decode_pack_rows(
    frame: bytes | bytearray | memoryview, received_at: datetime | None = None
) -> PackFrameRows:
    """Decode one whole frame into rows; ``received_at`` goes into the telemetry row."""
    buf = frame if type(frame) is bytes else bytes(frame)
    hit = nev_native.decode_pack(buf, received_at)
    if hit is None:
        # The structured decoder checks the frame in its order (time, then pack code, then
        # ID) and raises its exact error.
        structured = decode_pack_frame(buf)
        if structured.pack_code is not None:
            # Accepted: the native walk reads the blocks of its data frames (login / logout
            # and other frames it leaves: None).
            hit = nev_native.decode_pack(buf, received_at, True)
        if hit is None:
            return rows_of_pack_frame(structured)
    rows, stopped = hit
    if stopped:
        _settle(rows, buf)
    return rows


def decode_pack_rows_batch(
    values: Sequence[bytes], received_ms: Sequence[int]
) -> list[PackFrameRows | FrameError]:
    """Pack frames to rows in input order, one native call for the batch; a rejected frame
    is its ``FrameError`` (an instance, not raised). ``received_ms`` is each frame's gateway
    receive time (epoch ms, UTC), its telemetry row's ``received_at``."""
    decoded, stopped = nev_native.decode_pack_batch(values, received_ms)
    if not stopped and None not in decoded:  # the usual batch: every frame the native walk's
        return cast("list[PackFrameRows | FrameError]", decoded)
    out: list[PackFrameRows | FrameError] = []
    walked = set(stopped)
    for k, (buf, ms, rows) in enumerate(zip(values, received_ms, decoded, strict=True)):
        try:
            if rows is None:
                rows = decode_pack_rows(buf, datetime.fromtimestamp(ms / 1000, UTC))
            elif k in walked:
                _settle(rows, buf)
        except FrameError as exc:
            out.append(exc)
            continue
        out.append(rows)
    return out


def _settle(rows: PackFrameRows, buf: bytes) -> None:
    """A walk that stopped early: the structured decoder rejects the frame (its error is
    raised) or says whether it is partial and from where (rows of the earlier blocks kept)."""
    structured = decode_pack_frame(buf)
    tail = structured.tail_offset if structured.partial else None
    rows.partial = tail is not None
    rows.tail_offset = tail


def rows_of_pack_frame(frame: PackFrame) -> PackFrameRows:
    """The rows of a structured frame that is not real-time data: the envelope, and the
    session row of a login / logout command packet."""
    session = None
    body = frame.body
    code = frame.pack_code if frame.pack_code is not None else frame.ident
    if frame.time is not None and frame.pack_code is not None:
        if isinstance(body, PackLogin):
            values: tuple[object, ...] = (
                code,
                frame.time,
                "login",
                body.login_seq,
                body.iccid,
                body.original_code,
                body.rated_capacity_ah,
                body.rated_energy_kwh,
                body.nominal_voltage_v,
                body.cell_count,
                body.probe_count,
            )
            session = tuple.__new__(PackSessionRow, values)
        elif isinstance(body, PackLogout):
            out = (code, frame.time, "logout", body.logout_seq, *(None,) * 7)
            session = tuple.__new__(PackSessionRow, out)
    return PackFrameRows(
        edition=frame.edition,
        command=frame.command,
        pack_code=code,
        ts_ms=frame.ts_ms,
        encrypted=frame.encrypted,
        partial=frame.partial,
        session=session,
        response=frame.response,
        tail_offset=frame.tail_offset if frame.partial else None,
    )
