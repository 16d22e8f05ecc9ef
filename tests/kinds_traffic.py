"""Kafka records of the charger and battery kinds as gateways produce them (docs/kafka.md):
the frames of ``tests.integration.kinds_frames`` (built with the profiles' own encoders) at
epoch-ms times, and T/CEC 102 pushes with the headers the gateway sets. Shared by the
pipeline's unit and end-to-end tests."""

from __future__ import annotations

from typing import Any, Final

import orjson

from devtools.sim.envelope import china_time
from ingest.pipeline import wire
from tests.integration import kinds_frames as kf
from tests.integration.kinds_frames import OPERATOR, VIN, connector, seq

__all__ = [
    "OPERATOR",
    "VIN",
    "charge_status",
    "charger_realtime",
    "connector",
    "order_info",
    "pack_code",
    "pack_realtime",
    "received",
    "seq",
    "station_status",
    "tcec_headers",
]

Headers = list[tuple[str, bytes]]
STATUS: Final = "notification_stationStatus"
CHARGE: Final = "notification_equip_charge_status"
ORDER: Final = "notification_charge_order_info"


def pack_code(i: int) -> str:
    """A valid GB/T 34014 code for simulated pack ``i`` (NCM pack, made 2025-01-03)."""
    return f"CATPEA1TRACE01E3F{i:07d}"


def received(ms: int) -> Headers:
    return [(wire.RECEIVED_AT, str(ms).encode())]


def charger_realtime(ms: int, connector_id: str, **kw: Any) -> bytes:
    """``kinds_frames.charger_realtime`` at epoch ``ms``: the frame's bytes."""
    return kf.charger_realtime(china_time(ms), connector_id, **kw)[0]


def pack_realtime(ms: int, code: str, **kw: Any) -> bytes:
    """``kinds_frames.pack_realtime`` at epoch ``ms``: the frame's bytes."""
    return kf.pack_realtime(china_time(ms), code, **kw)[0]


def tcec_time(ms: int) -> str:
    """``ms`` as T/CEC 102's ``yyyy-MM-dd HH:mm:ss`` (Beijing time)."""
    return china_time(ms).strftime("%Y-%m-%d %H:%M:%S")


def tcec_headers(
    interface: str, ms: int, *, operator: str = OPERATOR, received_ms: int | None = None
) -> Headers:
    """The headers a gateway sets on a T/CEC push (envelope TimeStamp = ``ms``)."""
    stamp = china_time(ms).strftime("%Y%m%d%H%M%S")
    return wire.tcec_headers(
        interface, operator, stamp, received_ms=ms if received_ms is None else received_ms
    )


def station_status(connector_id: str, status: int) -> bytes:
    """``notification_stationStatus``: one connector's status (its time: the push's)."""
    info = {"ConnectorID": connector_id, "Status": status, "ParkStatus": 50, "LockStatus": 10}
    return orjson.dumps({"ConnectorStatusInfo": info})


def charge_status(
    ms: int, connector_id: str, seq_no: int, start_ms: int, energy_kwh: float, soc: float
) -> bytes:
    """``notification_equip_charge_status``: an order's progress sampled at ``ms`` (EndTime)."""
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
