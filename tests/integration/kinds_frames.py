"""Charger and pack frames for the storage tests, built with the profiles' own encoders and
decoded by the real decoders (the rows the pipeline hands the writer), and T/CEC 102 pushes
as the gateway puts them on ``nev.charger.tcec``."""

from __future__ import annotations

from datetime import datetime

import orjson

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackFrame,
    PackLogin,
    PackProbes,
    PackState,
    Site,
    decode_pack_rows,
    encode_pack_frame,
)
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    ChargerLogin,
    ConnectorEntry,
    ConnectorStatus,
    Faults,
    Output,
    VehicleDemand,
    decode_charger_rows,
    decode_tcec,
    encode_charger_frame,
)
from ingest.decoders.fields import Record

OPERATOR = "MA01H3BQ2"
CHARGER = OPERATOR + "P0000001"  # the profile's 17-character header code
VIN = "LSVAU2180N2183294"
PACK = "CATPEA1TRACE01E3F0000042"
PACK_B = "CATPEA1TRACE01E3F0000043"


def connector(n: int) -> str:
    return f"{OPERATOR}P0000001{n:02d}"


def seq(n: int) -> str:
    """A StartChargeSeq: OperatorID + 18."""
    return f"{OPERATOR}{n:018d}"


def charger_realtime(
    ts: datetime,
    cid: str,
    *,
    status: int | None = 3,
    output: tuple[float | None, float | None, float | None, float | None, int | None] | None = (
        400.0,
        125.5,
        50.2,
        12.345,
        35,
    ),
    vehicle: tuple[str | None, int | None] | None = (VIN, 55),
    order: str | None = None,
    faults: tuple[int, ...] | None = None,
    pile_faults: tuple[int, ...] | None = None,
    command: int = 0x02,
) -> tuple[bytes, ChargerRows]:
    """A real-time (or reissue) charger frame of one connector: its bytes and its rows."""
    blocks: list[Record] = []
    if status is not None:
        blocks.append(ConnectorStatus(cid, status, 50, 10))
    if output is not None:
        blocks.append(Output(cid, *output))
    if vehicle is not None:
        blocks.append(VehicleDemand(cid, vehicle[0], vehicle[1], 410.0, 130.0))
    if order is not None:
        blocks.append(ChargeOrder(cid, order, 2, ts.replace(minute=0, second=0), 8.5, 2.0, 10.5))
    if faults is not None:
        blocks.append(Faults(cid, faults))
    if pile_faults is not None:
        blocks.append(Faults(None, pile_faults))
    raw = encode_charger_frame(ChargerFrame(command, CHARGER, time=ts, blocks=tuple(blocks)))
    return raw, decode_charger_rows(raw, ts)


def charger_login(ts: datetime, *cids: str) -> tuple[bytes, ChargerRows]:
    entries = tuple(ConnectorEntry(c, 4, 1000, 200, 250, 125.0, 2) for c in cids)
    body = ChargerLogin(1, "3101150001", "3101150001000001", entries)
    raw = encode_charger_frame(ChargerFrame(0x01, CHARGER, time=ts, body=body))
    return raw, decode_charger_rows(raw)


def tcec_status(pushed_at: datetime, cid: str, status: int) -> tuple[bytes, ChargerRows]:
    data = orjson.dumps(
        {"ConnectorStatusInfo": {"ConnectorID": cid, "Status": status, "ParkStatus": 50}}
    )
    return data, decode_tcec(data, "notification_stationStatus", OPERATOR, pushed_at)


def tcec_charge(
    sampled: datetime, cid: str, order: str, energy: float, soc: float
) -> tuple[bytes, ChargerRows]:
    """A ``notification_equip_charge_status`` (the sample time is its EndTime)."""
    data = orjson.dumps(
        {
            "StartChargeSeq": order,
            "StartChargeSeqStat": 2,
            "ConnectorID": cid,
            "ConnectorStatus": 3,
            "CurrentA": 100.5,
            "VoltageA": 380.0,
            "Soc": soc,
            "StartTime": sampled.replace(minute=0, second=0).strftime("%Y-%m-%d %H:%M:%S"),
            "EndTime": sampled.strftime("%Y-%m-%d %H:%M:%S"),
            "TotalPower": energy,
            "Vin": VIN,
        }
    )
    return data, decode_tcec(data, "notification_equip_charge_status", OPERATOR, sampled)


def pack_realtime(
    ts: datetime,
    code: str = PACK,
    *,
    soc: int | None = 80,
    soh: int | None = 97,
    cycles: int | None = 420,
    stage: int | None = 2,
    site: str | None = "SWAP-SH-001",
    cells: tuple[float | None, ...] | None = (3.301, 3.305, None, 3.298),
    probes: tuple[int | None, ...] | None = (25, -5, None, 31),
    alarm: tuple[int, int, tuple[int, ...]] | None = None,
    command: int = 0x02,
    edition: int = 2025,
) -> tuple[bytes, PackFrameRows]:
    """A real-time (or reissue) pack frame: its bytes and its rows."""
    blocks: list[Record] = []
    if soc is not None or soh is not None or cycles is not None or stage is not None:
        blocks.append(PackState(stage, 3, soc, soh, cycles, 652.4, -12.5, 5000))
    if site is not None:
        blocks.append(Site(site, 7))
    if cells is not None:
        blocks.append(PackCells(cells))
    if probes is not None:
        blocks.append(PackProbes(probes))
    if alarm is not None:
        blocks.append(PackAlarm(*alarm))
    frame = PackFrame(
        edition,
        command,
        ident=code[7:],
        time=ts,
        pack_code=code,
        blocks=tuple(blocks),
    )
    raw = encode_pack_frame(frame)
    return raw, decode_pack_rows(raw, ts)


def pack_login(ts: datetime, code: str = PACK) -> tuple[bytes, PackFrameRows]:
    body = PackLogin(3, "89860000000000000001", None, 150.0, 96.0, 640.0, 4, 4)
    raw = encode_pack_frame(
        PackFrame(2025, 0x01, ident=code[7:], time=ts, pack_code=code, body=body)
    )
    return raw, decode_pack_rows(raw)
