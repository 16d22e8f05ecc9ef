"""The field tables of chargers and standalone packs: what their rules can read (alerts.fields
holds the vehicles' and compiles all of them).

A charger rule is evaluated once per connector and frame on a ``ConnectorView`` (the
connector's telemetry row and status row of that frame, either may be missing); a pack rule
once per pack frame on its ``PackTelemetryRow``. Each table maps a field name to a Python
expression over the locals its prologue sets. Names only come from these tables: no text of
a rule file reaches the generated code.

Aliases give the quantities every kind shares the vehicle's names (``total_voltage_v``,
``max_temp_c``, ``general_flags``, ...), the names latest_state uses for them too
(migration 0008), so the battery rules read alike for vehicles and packs.
"""

from __future__ import annotations

import zlib
from typing import Final, NamedTuple

from contract.battery import PackTelemetryRow
from contract.charger import ChargerTelemetryRow, ConnectorStatusRow

__all__ = ["CHARGER", "PACK", "ConnectorView", "KindFields", "place_code"]


class ConnectorView(NamedTuple):
    """One connector in one frame or push: what a charger rule sees."""

    telemetry: ChargerTelemetryRow | None
    status: ConnectorStatusRow | None


class KindFields(NamedTuple):
    prologue: str  # lines run once per evaluated object `fr`, setting the locals below
    fields: dict[str, str]  # field name -> expression
    hint: str  # for "unknown field" messages


def place_code(site_id: str | None) -> float | None:
    """A pack's place as a number rules can compare (equal site id = equal number): CRC-32,
    exact in a double. Two sites colliding only hides a flip between exactly those two."""
    return None if site_id is None else float(zlib.crc32(site_id.encode()))


_T = ChargerTelemetryRow._fields.index
_S = ConnectorStatusRow._fields.index
_CHARGER_NUMBERS: Final = (
    "voltage_v",
    "current_a",
    "power_kw",
    "energy_kwh",
    "connector_temp_c",
    "soc_pct",
    "bms_voltage_demand_v",
    "bms_current_demand_a",
)
CHARGER: Final = KindFields(
    prologue="    tl = fr[0] or _NT\n    st = fr[1] or _NS\n",
    fields={
        **{n: f"tl[{_T(n)}]" for n in _CHARGER_NUMBERS},
        "connector_status": f"st[{_S('status')}]",
        "park_status": f"st[{_S('park_status')}]",
        "lock_status": f"st[{_S('lock_status')}]",
        # latest_state's names for the same values
        "total_voltage_v": f"tl[{_T('voltage_v')}]",
        "total_current_a": f"tl[{_T('current_a')}]",
        "max_temp_c": f"tl[{_T('connector_temp_c')}]",
        # output above what the vehicle's BMS asks for (GB/T 27930 BCL): > 0 = over demand
        "over_voltage_v": f"_diff(tl[{_T('voltage_v')}], tl[{_T('bms_voltage_demand_v')}], 1.0)",
        "over_current_a": f"_diff(tl[{_T('current_a')}], tl[{_T('bms_current_demand_a')}], 1.0)",
    },
    hint="a ChargerTelemetryRow number (e.g. connector_temp_c), connector_status, "
    "over_voltage_v, over_current_a",
)

_P = PackTelemetryRow._fields.index
_PACK_NUMBERS: Final = (
    "edition",
    "lifecycle_stage",
    "work_state",
    "soc_pct",
    "soh_pct",
    "cycle_count",
    "voltage_v",
    "current_a",
    "insulation_kohm",
    "slot",
    "cell_count",
    "cell_min_mv",
    "cell_max_mv",
    "probe_count",
    "probe_min_c",
    "probe_max_c",
    "max_alarm_level",
    "alarm_flags",
    "fault_count",
)
PACK: Final = KindFields(
    prologue="    v = fr\n",
    fields={
        **{n: f"v[{_P(n)}]" for n in _PACK_NUMBERS},
        # the vehicle's names for the same values: the battery rules apply as written
        "total_voltage_v": f"v[{_P('voltage_v')}]",
        "total_current_a": f"v[{_P('current_a')}]",
        "general_flags": f"v[{_P('alarm_flags')}]",
        "max_temp_c": f"v[{_P('probe_max_c')}]",
        "min_temp_c": f"v[{_P('probe_min_c')}]",
        "max_cell_voltage_v": f"_scale(v[{_P('cell_max_mv')}], 0.001)",
        "min_cell_voltage_v": f"_scale(v[{_P('cell_min_mv')}], 0.001)",
        "pack_cell_spread_mv": f"_diff(v[{_P('cell_max_mv')}], v[{_P('cell_min_mv')}], 1.0)",
        "pack_probe_spread_c": f"_diff(v[{_P('probe_max_c')}], v[{_P('probe_min_c')}], 1.0)",
        "place": f"_place(v[{_P('site_id')}])",
    },
    hint="a PackTelemetryRow number (e.g. soh_pct, probe_max_c), a vehicle name of the same "
    "value (max_temp_c, min_cell_voltage_v, general_flags, ...), pack_cell_spread_mv, "
    "pack_probe_spread_c, place",
)
