"""Flat rows for chargers: what both charger decoders produce (the binary profile on
``nev.charger.raw``, docs/protocols/charger.md; the operators' T/CEC 102 pushes on
``nev.charger.tcec``) for the future storage writer and rule engine.

Each NamedTuple's field order is the column order of its future table (docs/protocols/
charger.md, "Rows"), so a row can go to ``copy_records_to_table`` as it is. Every row is
keyed by ``(operator_id, connector_id)``: the T/CEC 102 OperatorID (9 characters) and
ConnectorID, the key regulators already hold, whichever path the data came by. Codes are the
standard's integers (connector status 0/1/2/3/4/255, order state 1..5, ...); values are
engineering units (the unit is in the name); a sentinel or an absent optional field is
``None``, never a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

__all__ = [
    "ChargerFaultRow",
    "ChargerRows",
    "ChargerTelemetryRow",
    "ChargingSessionRow",
    "ConnectorInfoRow",
    "ConnectorStatusRow",
]

SOURCE_FRAME = "frame"  # the binary profile (nev.charger.raw)
SOURCE_TCEC = "tcec"  # a T/CEC 102 push (nev.charger.tcec)


class ConnectorInfoRow(NamedTuple):
    """``charger_connectors``: a connector's registration, from a charger login (0x01) or a
    T/CEC ``notification_stationInfo`` (ConnectorInfo inside EquipmentInfo)."""

    operator_id: str
    connector_id: str
    ts: datetime  # login frame time / push time, aware
    station_id: str | None  # StationID (None: the login leaves it empty)
    equipment_id: str  # EquipmentID (the pile)
    charger_id: str | None  # the profile's 17-character header code; None for T/CEC pushes
    connector_type: int  # ConnectorType 1..6
    voltage_upper_v: int | None  # VoltageUpperLimits
    voltage_lower_v: int | None  # VoltageLowerLimits
    current_a: int | None  # Current (rated)
    power_kw: float | None  # Power (rated)
    national_standard: int | None  # NationalStandard 1 = GB/T 2011, 2 = GB/T 2015
    source: str  # "frame" | "tcec"


class ConnectorStatusRow(NamedTuple):
    """``connector_status_events``: one row per reported connector status (ConnectorStatusInfo)."""

    operator_id: str
    connector_id: str
    ts: datetime
    status: int  # 0 offline, 1 idle, 2 occupied (not charging), 3 charging, 4 reserved, 255 fault
    park_status: int | None  # 0 unknown, 10 free, 50 occupied
    lock_status: int | None  # 0 unknown, 10 locked, 50 unlocked
    source: str


class ChargerTelemetryRow(NamedTuple):
    """``charger_telemetry``: a connector's output and the connected vehicle's state.

    The binary profile fills it from the output block (0x02) joined with the vehicle/BMS block
    (0x03) of the same connector in the same frame; a T/CEC ``notification_equip_charge_status``
    fills voltage/current (phase A, or DC), energy and SOC, and leaves what it does not carry
    (power, temperature, BMS demand) ``None``: nothing is computed in its place.
    """

    operator_id: str
    connector_id: str
    ts: datetime
    received_at: datetime | None  # gateway receive time (Kafka header), aware UTC
    charger_id: str | None  # header code of the binary profile; None for T/CEC pushes
    voltage_v: float | None
    current_a: float | None
    power_kw: float | None
    energy_kwh: float | None  # energy of the current session so far (TotalPower)
    connector_temp_c: int | None
    vin: str | None
    soc_pct: float | None  # 1 % steps in the profile, 0.1 % in T/CEC pushes
    bms_voltage_demand_v: float | None
    bms_current_demand_a: float | None
    source: str


class ChargingSessionRow(NamedTuple):
    """``charging_session_events``: progress of a charging order (``event = "progress"``, the
    profile's 0x04 block or ``notification_equip_charge_status``) or the completed order
    (``event = "order"``, ``notification_charge_order_info``). The later session table is
    built from these by StartChargeSeq."""

    operator_id: str
    connector_id: str
    ts: datetime
    start_charge_seq: str  # StartChargeSeq, 27 characters: OperatorID + 18
    event: str  # "progress" | "order"
    state: int | None  # StartChargeSeqStat 1 starting, 2 charging, 3 stopping, 4 ended, 5 unknown
    start_time: datetime
    end_time: datetime | None
    energy_kwh: float | None  # TotalPower
    elec_money: float | None  # ElecMoney / TotalElecMoney, yuan
    service_money: float | None  # SeviceMoney / TotalSeviceMoney (the standard's spelling)
    total_money: float | None
    stop_reason: int | None  # StopReason (orders only)
    vin: str | None
    source: str


class ChargerFaultRow(NamedTuple):
    """``charger_faults``: fault codes a charger reports (profile block 0x05)."""

    operator_id: str
    connector_id: str  # "": a fault of the pile, not of one connector (a key column: no NULL)
    ts: datetime
    # the pile's header code; a key column (migration 0076), so the pile faults of two piles in
    # one second stay two rows: "" where a report names no pile, never None
    charger_id: str
    fault_codes: list[int]
    source: str


@dataclass(slots=True, kw_only=True, eq=False, repr=False)
class ChargerRows:
    """Everything one charger frame or push yields. ``charger_id`` is the frame's header code
    ("" for a T/CEC push); ``ts_ms`` the frame time (None for commands without one)."""

    operator_id: str
    charger_id: str = ""
    command: int = 0
    ts_ms: int | None = None
    response: int = 0xFE
    encrypted: bool = False
    connectors: list[ConnectorInfoRow] = field(default_factory=list, init=False)
    statuses: list[ConnectorStatusRow] = field(default_factory=list, init=False)
    telemetry: list[ChargerTelemetryRow] = field(default_factory=list, init=False)
    sessions: list[ChargingSessionRow] = field(default_factory=list, init=False)
    faults: list[ChargerFaultRow] = field(default_factory=list, init=False)

    def __repr__(self) -> str:
        return (
            f"ChargerRows(operator_id={self.operator_id!r}, charger_id={self.charger_id!r}, "
            f"command={self.command:#04x}, statuses={len(self.statuses)}, "
            f"telemetry={len(self.telemetry)}, sessions={len(self.sessions)})"
        )
