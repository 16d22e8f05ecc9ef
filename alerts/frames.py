"""Build ``FrameRows`` from plain values: JSON-lines input of ``rules test``, tests, scenarios.

One JSON object per frame, e.g.::

    {"vin": "LTEST000000000001", "ts": "2026-07-01T10:00:00+08:00", "edition": 2025,
     "max_temp_c": 41, "min_cell_voltage_v": 3.61, "general_flags": 0,
     "packs": [{"pack": 1, "cells_mv": [3610, 3650], "probes_c": [40, 41]}]}

Keys other than ``vin``, ``ts``/``ts_ms``, ``edition``, ``command`` and ``packs`` are
``VehicleRow`` fields; missing fields are ``None`` (a sentinel), exactly as the decoder leaves
a field the frame did not carry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from contract.clock import CHINA_TZ
from contract.rows import FrameRows, PackRow, VehicleRow

__all__ = ["FrameSpecError", "build_frame", "frame_from_json", "pack_row"]


_VEHICLE_FIELDS: Final = frozenset(VehicleRow._fields)
_DEFAULTS: Final[dict[str, Any]] = {
    **dict.fromkeys(VehicleRow._fields),
    "extremes_derived": False,
    "fault_count": 0,
    "signature_missing": False,
}
_PACK_KEYS: Final = frozenset(PackRow._fields) | {"cells_mv", "probes_c"}
# What a JSON frame may give for a field (the decoder gives nothing else, and the rule engine
# relies on it: a string or a list where a number belongs would make a comparison raise).
_FLAGS: Final = frozenset({"general_flags"})  # a bit mask: integers only
# The decoders' contract, which the rule engine's two runners rely on to judge a frame alike:
# general_flags is a u32 (a DWORD on the wire); every other number is an int bounded by its
# wire field (a DWORD at most) or a float scaled from one. An int beyond 2**53 is no value a
# decoder gives: the native runner refuses it (a double cannot compare it exactly) while the
# Python one would compare it, so `rules test` judged a frame the pipeline never sees, and the
# two runners differently. It is refused here, not made a float: an int field (max_temp_c,
# soc_pct) is an int from the decoder, and a float would be a type it never gives there.
_FLAGS_MAX: Final = 0xFFFF_FFFF
# The fields a decoder gives as ints (``int | None`` in the rows, forward references there): a
# fraction (41.5 for max_temp_c) is no value a frame can carry, and is refused like an int
# beyond 2**53. So is a float (41.0): the decoder never gives one there.
_INTS: Final = frozenset(
    name
    for row in (VehicleRow, PackRow)
    for name, kind in row.__annotations__.items()
    if getattr(kind, "__forward_arg__", kind) in ("int", "int | None")
)
_EXACT: Final = 2**53
_BOOLS: Final = frozenset({"position_valid", "extremes_derived", "signature_missing"})
_NOT_VALUES: Final = frozenset({"vin", "ts", "received_at"})
_PACK_NUMBERS: Final = frozenset(PackRow._fields) - {
    "vin",
    "ts",
    "cell_voltages_raw",
    "probe_temps_raw",
}


def _check_value(name: str, value: Any) -> None:
    if value is None:
        return
    if name in _BOOLS:
        ok = isinstance(value, bool)
    elif name in _FLAGS:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _FLAGS_MAX
    elif isinstance(value, int) and not isinstance(value, bool):
        ok = -_EXACT <= value <= _EXACT
    elif name in _INTS:
        ok = False
    else:
        ok = isinstance(value, float) and math.isfinite(value)
    if not ok:
        want = (
            "true/false"
            if name in _BOOLS
            else f"an int 0..{_FLAGS_MAX:#x}"
            if name in _FLAGS
            else "an int within ±2**53 (the decoder gives this field as an integer)"
            if name in _INTS
            else "a number (an int within ±2**53)"
        )
        raise FrameSpecError(f"{name} = {value!r}: expected {want} or null")


class FrameSpecError(ValueError):
    """A JSON frame that cannot become ``FrameRows`` (unknown key, wrong type)."""


def pack_row(vin: str, ts: datetime, spec: Mapping[str, Any]) -> PackRow:
    """A PackRow from ``pack``, ``voltage_v``, ... and optionally ``cells_mv`` / ``probes_c``
    lists (None entries = sentinels), from which the raw bytes and min/max are derived."""
    unknown = set(spec) - _PACK_KEYS
    if unknown:
        raise FrameSpecError(f"unknown pack key(s) {sorted(unknown)}; known: {sorted(_PACK_KEYS)}")
    cells = spec.get("cells_mv")
    probes = spec.get("probes_c")
    raw_cells = spec.get("cell_voltages_raw", b"")
    raw_probes = spec.get("probe_temps_raw", b"")
    cmin, cmax = spec.get("cell_min_mv"), spec.get("cell_max_mv")
    pmin, pmax = spec.get("probe_min_c"), spec.get("probe_max_c")
    # a pack number out of the standard's 1..250, a first cell of 0: numbers the decoder keeps
    number, first = _whole(spec, "pack", 0, 255, 1), _whole(spec, "first_cell", 0, 65535, 1)
    for name, raw in (("cell_voltages_raw", raw_cells), ("probe_temps_raw", raw_probes)):
        if not isinstance(raw, bytes | bytearray):  # bytes only from Python; JSON has none
            raise FrameSpecError(f"pack {name}: give cells_mv / probes_c in JSON")
    try:
        if cells is not None:
            raw_cells = b"".join(
                (0xFFFF if c is None else int(c)).to_bytes(2, "big") for c in cells
            )
            valid = [int(c) for c in cells if c is not None]
            cmin, cmax = (min(valid), max(valid)) if valid else (None, None)
        if probes is not None:
            raw_probes = bytes(0xFF if p is None else int(p) + 40 for p in probes)
            valid = [int(p) for p in probes if p is not None]
            pmin, pmax = (min(valid), max(valid)) if valid else (None, None)
    except (TypeError, ValueError, OverflowError) as exc:
        # cells_mv are WORDs (0..65533 mV), probes_c BYTEs (-40..213 °C): as on the wire.
        raise FrameSpecError(f"pack cells_mv / probes_c: {exc}") from None
    return PackRow(
        vin=vin,
        ts=ts,
        pack=number,
        voltage_v=spec.get("voltage_v"),
        current_a=spec.get("current_a"),
        cell_count=spec.get("cell_count", len(cells) if cells is not None else None),
        first_cell=first,
        cell_voltages_raw=bytes(raw_cells),
        probe_temps_raw=bytes(raw_probes),
        cell_min_mv=cmin,
        cell_max_mv=cmax,
        probe_min_c=pmin,
        probe_max_c=pmax,
    )


def _whole(spec: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    """An integer field of a pack (``default`` when absent), else ``FrameSpecError``."""
    value = spec.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FrameSpecError(f"pack {name} = {value!r}: expected an integer {low}..{high}")
    return value


def build_frame(
    vin: str,
    ts_ms: int,
    *,
    edition: int = 2016,
    command: int = 0x02,
    packs: Sequence[Mapping[str, Any]] = (),
    **vehicle: Any,
) -> FrameRows:
    """A real-time (or, with ``command=0x03``, reissue) frame with the given vehicle fields."""
    unknown = set(vehicle) - _VEHICLE_FIELDS
    if unknown:
        raise FrameSpecError(f"unknown vehicle field(s) {sorted(unknown)}")
    ts = datetime.fromtimestamp(ts_ms / 1000, CHINA_TZ)
    values = {**_DEFAULTS, **vehicle, "vin": vin, "ts": ts, "edition": edition, "command": command}
    return FrameRows(
        edition=edition,
        command=command,
        vin=vin,
        ts_ms=ts_ms,
        vehicle=VehicleRow(**values),
        packs=[pack_row(vin, ts, p) for p in packs],
    )


def frame_from_json(obj: Mapping[str, Any]) -> FrameRows:
    """``build_frame`` from one decoded JSON object (see the module docstring)."""
    if not isinstance(obj, Mapping):
        raise FrameSpecError("a JSON frame must be an object")
    fields = dict(obj)
    vin = fields.pop("vin", None)
    if not isinstance(vin, str) or not vin:
        raise FrameSpecError("missing 'vin'")
    ts_ms = fields.pop("ts_ms", None)
    ts = fields.pop("ts", None)
    if ts_ms is None and isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError as exc:
            raise FrameSpecError(f"bad 'ts' {ts!r}: {exc}") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=CHINA_TZ)  # the protocol's own clock is Beijing time
        ts_ms = int(parsed.timestamp() * 1000)
    if not isinstance(ts_ms, int):
        raise FrameSpecError("missing time: give 'ts' (ISO 8601) or 'ts_ms' (epoch ms)")
    edition = fields.pop("edition", 2016)
    if edition not in (2016, 2025) or isinstance(edition, bool):
        raise FrameSpecError(f"edition = {edition!r}: expected 2016 or 2025")
    command = fields.pop("command", 0x02)
    if not isinstance(command, int) or isinstance(command, bool) or not 0 <= command <= 0xFF:
        raise FrameSpecError(
            f"command = {command!r}: expected a command byte (2 real-time, 3 reissue)"
        )
    packs = fields.pop("packs", [])
    if not isinstance(packs, list) or not all(isinstance(p, Mapping) for p in packs):
        raise FrameSpecError("'packs' must be a list of objects")
    for name, value in fields.items():
        if name not in _NOT_VALUES:
            _check_value(name, value)
    for p in packs:
        for name in _PACK_NUMBERS.intersection(p):
            _check_value(name, p[name])
        for name in ("cells_mv", "probes_c"):
            if not isinstance(p.get(name, []), list | None):
                raise FrameSpecError(f"pack {name} must be a list")
    return build_frame(vin, ts_ms, edition=edition, command=command, packs=packs, **fields)
