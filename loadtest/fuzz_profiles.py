"""The charger and pack profiles for ``fuzz_decode --profile charger|battery``: seed frames
and the check of one input -- nothing but ``FrameError`` escapes either decoder, and the fast
path (the pipeline's) decides as the structured decoder does.

    charger: ``decode_charger_rows`` == ``rows_of_charger_frame(decode_charger_frame(x))``,
             rows included, or both raise the same reason at the same offset;
    battery: ``decode_pack_rows`` and ``decode_pack_frame`` raise the same reason at the same
             offset, or both accept, with the same code, time, partial flag and tail offset
             (row values are compared field for field by tests/unit/test_battery_fast.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from contract.charger import ChargerRows
from contract.clock import CHINA_TZ
from ingest.decoders import FrameError
from ingest.decoders.battery import (
    PackFrame,
    PackLogin,
    PackLogout,
    decode_pack_frame,
    decode_pack_rows,
    encode_pack_frame,
    pack_frame_to_json,
)
from ingest.decoders.charger import (
    ChargerFrame,
    ChargerLogin,
    ChargerLogout,
    ConnectorEntry,
    Faults,
    decode_charger_frame,
    decode_charger_rows,
    encode_charger_frame,
    rows_of_charger_frame,
)
from loadtest import bench_battery, bench_charger

__all__ = ["CHECKS", "SEEDS", "Disagreement"]

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=CHINA_TZ)


class Disagreement(AssertionError):
    """The fast path and the structured decoder decided one input differently."""


def charger_seeds() -> list[bytes]:
    """Typical charging frames, plus a login, a logout and a frame with pile and connector
    faults."""
    seeds = bench_charger.typical_frames(8)
    cid = "MA01H3BQ2P000000101"
    entry = ConnectorEntry(cid, 4, 1000, 200, 250, 125.0, 2)
    login = ChargerLogin(
        1, "3101150001", "3101150001000001", (entry, entry._replace(connector_id="B"))
    )
    for frame in (
        ChargerFrame(0x01, "MA01H3BQ2P0000001", time=T0, body=login),
        ChargerFrame(0x04, "MA01H3BQ2P0000001", time=T0, body=ChargerLogout(7)),
        ChargerFrame(
            0x03, "MA01H3BQ2P0000001", time=T0, blocks=(Faults(None, (1, 2)), Faults(cid, (3,)))
        ),
    ):
        seeds.append(encode_charger_frame(frame))
    return seeds


def battery_seeds() -> list[bytes]:
    """Typical pack frames of both envelopes, plus a login of a second-life pack and a
    logout."""
    seeds = bench_battery.typical_frames(8)
    seeds += [b"$$" + f[2:] for f in seeds[:2]]  # the BCC starts after the start marker
    code = "CATPEA1TRACE01E3F0000042"
    login = PackLogin(
        3, "89860000000000000001", "BYDPB10LINE001A1A0001234", 150.0, 60.0, 360.0, 96, 32
    )
    for edition in (2016, 2025):
        for command, body in ((0x01, login), (0x04, PackLogout(3))):
            frame = PackFrame(edition, command, ident=code[7:], time=T0, pack_code=code, body=body)
            seeds.append(encode_pack_frame(frame))
    return seeds


def _same_reject(fast: Callable[[bytes], object], data: bytes, exc: FrameError) -> str:
    """The structured decoder rejected ``data`` with ``exc``: the fast path must too, alike."""
    try:
        fast(data)
    except FrameError as err:
        if (err.reason, err.offset) != (exc.reason, exc.offset):
            raise Disagreement(f"fast {err} / structured {exc}") from None
        return f"rejected:{exc.reason}"
    raise Disagreement(f"the fast path accepted what the structured decoder rejects: {exc}")


def _rows(rows: ChargerRows) -> tuple[object, ...]:
    return (
        rows.operator_id, rows.charger_id, rows.command, rows.ts_ms, rows.response,
        rows.encrypted, rows.connectors, rows.statuses, rows.telemetry, rows.sessions,
        rows.faults,
    )  # fmt: skip


def check_charger(data: bytes) -> str:
    """One input through both charger paths: the outcome ("decoded" or "rejected:<reason>")."""
    try:
        frame = decode_charger_frame(data)
    except FrameError as exc:
        return _same_reject(decode_charger_rows, data, exc)
    if _rows(decode_charger_rows(data)) != _rows(rows_of_charger_frame(frame)):
        raise Disagreement("fast rows differ from the structured rows")
    return "decoded"


def check_battery(data: bytes) -> str:
    """One input through both pack paths: the outcome ("decoded", "partial", "rejected:...")."""
    try:
        frame = decode_pack_frame(data)
    except FrameError as exc:
        return _same_reject(decode_pack_rows, data, exc)
    pack_frame_to_json(frame)
    rows = decode_pack_rows(data)
    code = frame.pack_code if frame.pack_code is not None else frame.ident
    tail = frame.tail_offset if frame.partial else None
    if (rows.pack_code, rows.ts_ms, rows.partial, rows.tail_offset) != (
        code,
        frame.ts_ms,
        frame.partial,
        tail,
    ):
        raise Disagreement("fast rows disagree with the structured frame's envelope")
    return "partial" if frame.partial else "decoded"


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "charger": charger_seeds,
    "battery": battery_seeds,
}
CHECKS: dict[str, Callable[[bytes], str]] = {"charger": check_charger, "battery": check_battery}
