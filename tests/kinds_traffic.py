"""Records of the charger and battery kinds as gateways put them on Kafka, built with the
profiles' own encoders (docs/protocols/charger.md, battery.md) and the T/CEC 102 field lists:
charger frames, standalone pack frames and T/CEC pushes with their headers
(docs/kafka.md). Shared by the pipeline's unit and end-to-end tests."""

from __future__ import annotations

from typing import Any, Final

import orjson

from devtools.sim.envelope import china_time
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackFrame,
    PackProbes,
    PackState,
    Site,
    encode_pack_frame,
    pack_ident,
)
from ingest.decoders.charger import (
    ChargerFrame,
    ConnectorStatus,
    Faults,
    Output,
    VehicleDemand,
    encode_charger_frame,
)
from ingest.pipeline import wire

OPERATOR: Final = "MA01H3BQ2"
CHARGER_ID: Final = OPERATOR + "P0000001"  # the profile's 17-character header code
VIN: Final = "LSVAU2180N2183294"

Headers = list[tuple[str, bytes]]


def connector(i: int) -> str:
    """Connector ``i`` of the simulated pile: OperatorID + pile + 2 digits (T/CEC ConnectorID)."""
    return f"{OPERATOR}P0000001{i:02d}"


def pack_code(i: int) -> str:
    """A valid GB/T 34014 code for simulated pack ``i`` (NCM pack, made 2025-01-03)."""
    return f"CATPEA1TRACE01E3F{i:07d}"


def received(ms: int) -> Headers:
    return [(wire.RECEIVED_AT, str(ms).encode())]


def charger_realtime(
    ms: int,
    connector_id: str,
    *,
    status: int = 3,
    power_kw: float = 50.2,
    energy_kwh: float = 12.345,
    temp_c: int = 35,
    soc: int = 55,
    command: int = 0x02,
    charger_id: str = CHARGER_ID,
    fault_codes: tuple[int, ...] = (),
) -> bytes:
    """A real-time (or reissue) frame: connector status, output, the vehicle's state and BMS
    demand, and a pile fault when ``fault_codes`` are given."""
    blocks: list[Any] = [
        ConnectorStatus(connector_id, status, 50, 10),
        Output(connector_id, 400.0, 125.5, power_kw, energy_kwh, temp_c),
        VehicleDemand(connector_id, VIN, soc, 410.0, 130.0),
    ]
    if fault_codes:
        blocks.append(Faults(None, fault_codes))
    frame = ChargerFrame(command, charger_id, time=china_time(ms), blocks=tuple(blocks))
    return encode_charger_frame(frame)


def pack_realtime(
    ms: int,
    code: str,
    *,
    stage: int = 2,
    site: str = "SWAP-SH-0001",
    soc: int = 80,
    soh: int = 95,
    cycles: int = 120,
    command: int = 0x02,
    ident: str | None = None,
) -> bytes:
    """A standalone pack's real-time (or reissue) frame, every information type once."""
    frame = PackFrame(
        edition=2016,
        command=command,
        ident=pack_ident(code) if ident is None else ident,
        time=china_time(ms),
        pack_code=code,
        blocks=(
            PackState(stage, 3, soc, soh, cycles, 350.5, -12.3, 5000),
            Site(site, 7),
            PackCells((3.301, 3.302, None)),
            PackProbes((25, 26)),
            PackAlarm(0, 0, ()),
        ),
    )
    return encode_pack_frame(frame)


def tcec_time(ms: int) -> str:
    """``ms`` as T/CEC 102's ``yyyy-MM-dd HH:mm:ss`` (Beijing time)."""
    return china_time(ms).strftime("%Y-%m-%d %H:%M:%S")


def tcec_headers(
    interface: str, ms: int, *, operator: str = OPERATOR, received_ms: int | None = None
) -> Headers:
    """The headers a gateway sets on a T/CEC push (envelope TimeStamp = ``ms``)."""
    return [
        (wire.TCEC_INTERFACE, interface.encode()),
        (wire.TCEC_OPERATOR_ID, operator.encode()),
        (wire.TCEC_TIMESTAMP, china_time(ms).strftime("%Y%m%d%H%M%S").encode()),
        *received(ms if received_ms is None else received_ms),
    ]


def station_status(connector_id: str, status: int) -> bytes:
    """``notification_stationStatus``: one connector's status (its time: the push's)."""
    info = {"ConnectorID": connector_id, "Status": status, "ParkStatus": 50, "LockStatus": 10}
    return orjson.dumps({"ConnectorStatusInfo": info})


def seq(n: int) -> str:
    """A StartChargeSeq: OperatorID + 18 characters."""
    return f"{OPERATOR}{n:018d}"


def charge_status(
    ms: int, connector_id: str, seq_no: int, start_ms: int, energy_kwh: float, soc: float
) -> bytes:
    """``notification_equip_charge_status``: a charging order's progress sampled at ``ms``."""
    return orjson.dumps(
        {
            "StartChargeSeq": seq(seq_no),
            "StartChargeSeqStat": 2,
            "ConnectorID": connector_id,
            "ConnectorStatus": 3,
            "CurrentA": 125.5,
            "VoltageA": 400.0,
            "Soc": soc,
            "StartTime": tcec_time(start_ms),
            "EndTime": tcec_time(ms),
            "TotalPower": energy_kwh,
            "ElecMoney": 1.0,
            "SeviceMoney": 0.5,
            "TotalMoney": 1.5,
            "Vin": VIN,
        }
    )


def order_info(
    connector_id: str, seq_no: int, start_ms: int, end_ms: int, energy_kwh: float
) -> bytes:
    """``notification_charge_order_info``: the completed order (its time: EndTime)."""
    return orjson.dumps(
        {
            "StartChargeSeq": seq(seq_no),
            "ConnectorID": connector_id,
            "StartTime": tcec_time(start_ms),
            "EndTime": tcec_time(end_ms),
            "TotalPower": energy_kwh,
            "TotalElecMoney": 20.0,
            "TotalSeviceMoney": 10.0,
            "TotalMoney": 30.0,
            "StopReason": 0,
            "Vin": VIN,
        }
    )
