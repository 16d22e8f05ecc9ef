"""Which decoded values rules can read, and one compiled extractor per rule set.

A rule names a field; the rule set's extractor reads every field its rules need from a
``FrameRows`` once per frame into a tuple, so ten rules on ``max_temp_c`` cost one attribute
read, not ten. Field names:

- any numeric ``VehicleRow`` field by its name (``max_temp_c``, ``soc_pct``, ``general_flags``);
- ``max(pack.F)`` / ``min(pack.F)`` and ``max(motor.F)`` / ``min(motor.F)``: the extreme of a
  ``PackRow`` / ``MotorRow`` field over the frame's packs or motors;
- derived spreads: ``pack_cell_spread_mv`` / ``pack_probe_spread_c`` (the widest max - min of
  any one pack, from the PackRow min/max fields) and ``vehicle_cell_spread_mv`` /
  ``vehicle_probe_spread_c`` (vehicle extremes: max cell/probe minus min cell/probe).

Sentinels stay ``None``: an aggregate over no valid values is ``None``, never 0.

Those are the vehicle's fields; chargers and packs have their own tables
(alerts/entity_fields.py). Every function here takes the entity kind a rule is for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from alerts.entity_fields import CHARGER, PACK, KindFields, place_code
from contract.charger import ChargerTelemetryRow, ConnectorStatusRow
from contract.rows import MotorRow, PackRow, VehicleRow

__all__ = ["DERIVED", "Extractor", "compile_extractor", "field_error"]

Value = int | float | None
# Reads a vehicle's FrameRows, a charger's ConnectorView or a pack's PackTelemetryRow.
Extractor = Callable[[Any], tuple[Value, ...]]
_OTHER_KINDS: Final[dict[str, KindFields]] = {"charger": CHARGER, "battery": PACK}

# VehicleRow fields that are not numbers a rule could compare.
_NOT_NUMERIC: Final = frozenset(
    {"vin", "ts", "received_at", "position_valid", "extremes_derived", "signature_missing"}
)
_VEHICLE: Final = {name: i for i, name in enumerate(VehicleRow._fields) if name not in _NOT_NUMERIC}
_PACK: Final = {
    name: i
    for i, name in enumerate(PackRow._fields)
    if name not in ("vin", "ts", "cell_voltages_raw", "probe_temps_raw")
}
_MOTOR: Final = {name: i for i, name in enumerate(MotorRow._fields) if name not in ("vin", "ts")}

_V = VehicleRow._fields.index
_P = PackRow._fields.index
# Derived field -> expression over `v` (vehicle row) and `fr` (the frame). Names only come from
# this table and the dicts above: no text of a rule file ever reaches the generated code.
DERIVED: Final = {
    "pack_cell_spread_mv": f"_spread(fr.packs, {_P('cell_min_mv')}, {_P('cell_max_mv')})",
    "pack_probe_spread_c": f"_spread(fr.packs, {_P('probe_min_c')}, {_P('probe_max_c')})",
    "vehicle_cell_spread_mv": (
        f"_diff(v[{_V('max_cell_voltage_v')}], v[{_V('min_cell_voltage_v')}], 1000.0)"
    ),
    "vehicle_probe_spread_c": f"_diff(v[{_V('max_temp_c')}], v[{_V('min_temp_c')}], 1.0)",
}


def _spread(rows: Sequence[tuple[object, ...]], i_min: int, i_max: int) -> Value:
    best: Value = None
    for row in rows:
        lo = row[i_min]
        hi = row[i_max]
        if lo is not None and hi is not None:
            d = hi - lo  # type: ignore[operator]
            if best is None or d > best:
                best = d
    return best


def _diff(hi: Value, lo: Value, scale: float) -> Value:
    if hi is None or lo is None:
        return None
    # Round away float noise of V -> mV so a 0.5 V spread compares as exactly 500 mV.
    return round((hi - lo) * scale, 3)


def _max(rows: Sequence[tuple[object, ...]], i: int) -> Value:
    best: Value = None
    for row in rows:
        x = row[i]
        if x is not None and (best is None or x > best):  # type: ignore[operator]
            best = x  # type: ignore[assignment]
    return best


def _min(rows: Sequence[tuple[object, ...]], i: int) -> Value:
    best: Value = None
    for row in rows:
        x = row[i]
        if x is not None and (best is None or x < best):  # type: ignore[operator]
            best = x  # type: ignore[assignment]
    return best


def _scale(x: Value, factor: float) -> Value:
    # Rounded like the decoder's own scaled fields: 3612 mV is 3.612 V, not 3.6119999...
    return None if x is None else round(x * factor, 6)


def _expression(name: str, kind: str = "vehicle") -> str | None:
    other = _OTHER_KINDS.get(kind)
    if other is not None:
        return other.fields.get(name)
    if name in _VEHICLE:
        return f"v[{_VEHICLE[name]}]"
    if name in DERIVED:
        return DERIVED[name]
    for agg in ("max", "min"):
        for prefix, table, attr in (("pack", _PACK, "packs"), ("motor", _MOTOR, "motors")):
            head = f"{agg}({prefix}."
            if name.startswith(head) and name.endswith(")"):
                inner = name[len(head) : -1]
                if inner in table:
                    return f"_{agg}(fr.{attr}, {table[inner]})"
    return None


def field_error(name: str, kind: str = "vehicle") -> str | None:
    """Why ``name`` is not a readable field of ``kind``, or ``None`` when it is."""
    if _expression(name, kind) is not None:
        return None
    other = _OTHER_KINDS.get(kind)
    if other is not None:
        return f"unknown field {name!r} for a {kind} rule: use {other.hint}"
    return (
        f"unknown field {name!r}: use a VehicleRow field (e.g. max_temp_c), max(pack.F) / "
        f"min(pack.F), max(motor.F) / min(motor.F), or one of {', '.join(sorted(DERIVED))}"
    )


def compile_extractor(names: Sequence[str], kind: str = "vehicle") -> Extractor:
    """One function returning the values of ``names`` (in that order) for a frame.

    The frame must carry a vehicle row (the engine checks before calling). Generated code
    because a tuple display of attribute reads is ~3x faster than calling one getter per field,
    and this runs for every frame of the pipeline.
    """
    exprs = []
    for name in names:
        expr = _expression(name, kind)
        if expr is None:
            raise ValueError(field_error(name, kind))
        exprs.append(expr)
    body = ", ".join(exprs) + ("," if len(exprs) == 1 else "")
    other = _OTHER_KINDS.get(kind)
    prologue = "    v = fr.vehicle\n" if other is None else other.prologue
    src = f"def _extract(fr):\n{prologue}    return ({body})\n"
    namespace: dict[str, object] = {
        "_spread": _spread,
        "_diff": _diff,
        "_max": _max,
        "_min": _min,
        "_scale": _scale,
        "_place": place_code,
        # a connector reported without telemetry or without status in this frame
        "_NT": (None,) * len(ChargerTelemetryRow._fields),
        "_NS": (None,) * len(ConnectorStatusRow._fields),
    }
    exec(compile(src, "<alerts.fields>", "exec"), namespace)  # noqa: S102 - names from tables above
    fn: Extractor = namespace["_extract"]  # type: ignore[assignment]
    return fn
