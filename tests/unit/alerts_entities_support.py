"""Charger and pack frames for the rule tests: encoded with the profiles' own encoders and
decoded by the pipeline's decoders, so the rules see exactly the rows the pipeline gives."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from alerts import RuleEngine, RuleSet
from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.clock import CHINA_TZ
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackFrame,
    PackProbes,
    PackState,
    Site,
    decode_pack_rows,
    encode_pack_frame,
)
from ingest.decoders.charger import (
    ChargerFrame,
    ConnectorStatus,
    Output,
    VehicleDemand,
    decode_charger_rows,
    decode_tcec,
    encode_charger_frame,
)

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=CHINA_TZ)
T0_MS = int(T0.timestamp() * 1000)
OP = "MA01H3BQ2"
CHARGER_ID = OP + "P0000001"
CID = "MA01H3BQ2P000000101"
CONNECTOR = f"{OP}:{CID}"  # the charger entity id
VIN = "LSVAU2180N2183294"
CODE = "CATPEA1TRACE01E3F0000042"  # a valid GB/T 34014 pack code
# A rule raised by a connector in fault (status 255) and cleared by any other status
FAULT = """
[[rule]]
id = "fault"
entity = "charger"
kind = "threshold"
severity = "major"
title = "connector in fault"
field = "connector_status"
op = "=="
value = 255
"""
US = 0.000_001  # T/CEC status pushes of one second are Seq µs apart (TimeStamp + Seq µs)


def at(s: float) -> int:
    """Epoch ms of T0 + s seconds."""
    return T0_MS + int(s * 1000)


def charger(
    s: float,
    *,
    status: int | None = 3,
    voltage: float | None = 400.0,
    current: float | None = 100.0,
    energy: float | None = 10.0,
    temp: int | None = 35,
    soc: int | None = 50,
    bms_v: float | None = 410.0,
    bms_a: float | None = 130.0,
) -> ChargerRows:
    """A real-time frame of one connector: status, output and vehicle/BMS blocks."""
    blocks: list[Any] = [] if status is None else [ConnectorStatus(CID, status, 50, 10)]
    power = None if voltage is None or current is None else round(voltage * current / 1000, 1)
    blocks.append(Output(CID, voltage, current, power, energy, temp))
    blocks.append(VehicleDemand(CID, VIN, soc, bms_v, bms_a))
    frame = ChargerFrame(
        command=0x02,
        charger_id=CHARGER_ID,
        time=T0 + timedelta(seconds=s),
        blocks=tuple(blocks),
    )
    return decode_charger_rows(encode_charger_frame(frame))


def status_push(s: float, status: int) -> ChargerRows:
    """A T/CEC 102 notification_stationStatus push at T0 + s."""
    data = {"ConnectorStatusInfo": {"ConnectorID": CID, "Status": status}}
    return decode_tcec(
        orjson.dumps(data), "notification_stationStatus", OP, T0 + timedelta(seconds=s)
    )


def charge_status_push(s: float, **fields: Any) -> ChargerRows:
    """A T/CEC 102 notification_equip_charge_status push sampled at T0 + s."""
    end = (T0 + timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S")
    data = {
        "StartChargeSeq": OP + "202503011000000001",
        "StartChargeSeqStat": 2,
        "ConnectorID": CID,
        "ConnectorStatus": 3,
        "CurrentA": 125.5,
        "CurrentB": 0,
        "CurrentC": 0,
        "VoltageA": 400.0,
        "VoltageB": 0,
        "VoltageC": 0,
        "Soc": 55.5,
        "StartTime": "2025-03-01 09:30:00",
        "EndTime": end,
        "TotalPower": 25.125,
        **fields,
    }
    return decode_tcec(orjson.dumps(data), "notification_equip_charge_status", OP, T0)


def pack(
    s: float,
    *,
    edition: int = 2016,
    command: int = 0x02,
    code: str = CODE,
    site: str = "SWAP0001",
    stage: int = 2,
    soc: int = 80,
    soh: int = 95,
    cycles: int = 300,
    voltage: float = 350.0,
    insulation: int | None = 5000,
    cells: tuple[float | None, ...] = (3.60, 3.61, 3.62),
    probes: tuple[int | None, ...] = (25, 26),
    level: int = 0,
    flags: int = 0,
) -> PackFrameRows:
    """A real-time (or reissue) frame of a standalone pack with every block."""
    blocks = (
        PackState(stage, 3, soc, soh, cycles, voltage, 10.0, insulation),
        Site(site, 1),
        PackCells(cells),
        PackProbes(probes),
        PackAlarm(level, flags, ()),
    )
    frame = PackFrame(
        edition=edition,
        command=command,
        ident=code[7:],
        time=T0 + timedelta(seconds=s),
        pack_code=code,
        blocks=blocks,
    )
    return decode_pack_rows(encode_pack_frame(frame))


def engine(kind: str, toml: str | None = None, **kwargs: Any) -> RuleEngine:
    rules = RuleSet.default() if toml is None else RuleSet.from_toml(toml)
    return RuleEngine(rules, entity_kind=kind, **kwargs)


def raised(changes: list[Any]) -> list[tuple[str, str, int]]:
    return [
        (c.alert.rule_id, c.alert.entity_id, c.alert.opened_ms)
        for c in changes
        if c.type == "raised"
    ]


def cleared(changes: list[Any]) -> list[tuple[str, int | None]]:
    return [(c.alert.rule_id, c.alert.cleared_ms) for c in changes if c.type == "cleared"]
