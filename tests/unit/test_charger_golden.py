"""Golden frames of the charger profile, hex written by hand from docs/protocols/charger.md,
and the profile's rejections (each with its documented reason and offset)."""

from __future__ import annotations

from datetime import datetime

import pytest

from contract.clock import CHINA_TZ
from ingest.decoders import FrameError
from ingest.decoders.charger import (
    ChargerLogin,
    ConnectorEntry,
    ConnectorStatus,
    Output,
    VehicleDemand,
    decode_charger_frame,
    decode_charger_rows,
    encode_charger_frame,
)
from ingest.decoders.checksum import bcc

pytestmark = pytest.mark.unit

CHARGER = "4d41303148334251325030303030303031"  # "MA01H3BQ2" + "P0000001"
CID = "4d41303148334251325030303030303031303100000000000000"  # "MA01H3BQ2P000000101", NUL x7
VIN = "4c53564155323138304e32313833323934"  # "LSVAU2180N2183294"

REALTIME = bytes.fromhex(
    "2323 02 fe" + CHARGER + "01 007b"  # "##", real-time, command, ID, no encryption, N=123
    "190301 0a0000"  # 2025-03-01 10:00:00 (Beijing)
    "01" + CID + "03 32 0a"  # status: 3 charging, park 50 occupied, lock 10 locked
    "02" + CID + "0fa0 04e7 01f6 00003039 4b"  # 400.0 V, 125.5 A, 50.2 kW, 12.345 kWh, 35 C
    "03" + CID + VIN + "37 1004 0514"  # SOC 55 %, BMS demand 410.0 V / 130.0 A
    "49"  # BCC
)
LOGIN = bytes.fromhex(
    "2323 01 fe" + CHARGER + "01 0058"  # login, N=88
    "190301 090000"  # 2025-03-01 09:00:00
    "0001"  # login serial 1
    "3331303131353030303100000000000000000000"  # StationID "3101150001"
    "3331303131353030303130303030303100000000000000"  # EquipmentID "3101150001000001"
    "01"  # one connector
     + CID + "04 03e8 00c8 00fa 04e2 02"  # DC gun, 1000 V / 200 V, 250 A, 125.0 kW, GB/T 2015
    "8d"
)
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=CHINA_TZ)
CONNECTOR = "MA01H3BQ2P000000101"


def test_realtime_golden_frame_decodes_to_the_documented_values() -> None:
    f = decode_charger_frame(REALTIME)
    assert (f.command, f.charger_id, f.operator_id, f.time) == (
        0x02,
        "MA01H3BQ2P0000001",
        "MA01H3BQ2",
        T0,
    )
    assert f.blocks == (
        ConnectorStatus(CONNECTOR, 3, 50, 10),
        Output(CONNECTOR, 400.0, 125.5, 50.2, 12.345, 35),
        VehicleDemand(CONNECTOR, "LSVAU2180N2183294", 55, 410.0, 130.0),
    )
    assert encode_charger_frame(f) == REALTIME


def test_realtime_rows_join_output_and_vehicle_by_connector() -> None:
    rows = decode_charger_rows(REALTIME)
    assert [tuple(s) for s in rows.statuses] == [("MA01H3BQ2", CONNECTOR, T0, 3, 50, 10, "frame")]
    (t,) = rows.telemetry
    assert (t.operator_id, t.connector_id, t.charger_id) == (
        "MA01H3BQ2", CONNECTOR, "MA01H3BQ2P0000001",
    )  # fmt: skip
    assert (t.voltage_v, t.current_a, t.power_kw, t.energy_kwh, t.connector_temp_c) == (
        400.0, 125.5, 50.2, 12.345, 35,
    )  # fmt: skip
    assert (t.vin, t.soc_pct, t.bms_voltage_demand_v, t.bms_current_demand_a) == (
        "LSVAU2180N2183294", 55, 410.0, 130.0,
    )  # fmt: skip
    assert rows.sessions == [] and rows.faults == []


def test_login_golden_frame_registers_the_connector() -> None:
    f = decode_charger_frame(LOGIN)
    assert f.body == ChargerLogin(
        1,
        "3101150001",
        "3101150001000001",
        (ConnectorEntry(CONNECTOR, 4, 1000, 200, 250, 125.0, 2),),
    )
    assert encode_charger_frame(f) == LOGIN
    (c,) = decode_charger_rows(LOGIN).connectors
    assert (c.operator_id, c.connector_id, c.station_id, c.equipment_id, c.charger_id) == (
        "MA01H3BQ2", CONNECTOR, "3101150001", "3101150001000001", "MA01H3BQ2P0000001",
    )  # fmt: skip


def _reframe(unit_and_header: bytes) -> bytes:
    """Recompute length and BCC after editing a frame (so the edit is what is tested)."""
    body = bytearray(unit_and_header[:-1])
    n = len(body) - 24
    body[22:24] = n.to_bytes(2, "big")
    return bytes(body) + bytes((bcc(body, 2, len(body)),))


def _at(frame: bytes, off: int, value: int) -> bytes:
    b = bytearray(frame)
    b[off] = value
    return _reframe(bytes(b))


STATUS_OFF = 24 + 6 + 1 + 26  # the status byte of the first block


@pytest.mark.parametrize(
    ("frame", "reason", "offset"),
    [
        (REALTIME[:-1] + b"\x00", "bad_checksum", len(REALTIME) - 1),
        (b"$$" + REALTIME[2:], "bad_start", 0),
        (_at(REALTIME, 2, 0x05), "unknown_command", 2),
        (_at(REALTIME, STATUS_OFF, 5), "bad_field", STATUS_OFF),  # Status 5: no T/CEC code
        (_at(REALTIME, STATUS_OFF + 1, 20), "bad_field", STATUS_OFF + 1),  # ParkStatus 20
        (_at(REALTIME, 30, 0x09), "bad_field", 30),  # unknown information type
        (_at(REALTIME, 4, ord("a")), "bad_identity", 4),  # OperatorID is upper-case
        (_at(REALTIME, 20, 0), "bad_identity", 20),  # pile code padded: 16 characters
        (_at(REALTIME, 31, 0), "bad_field", 31),  # empty ConnectorID
        (_reframe(REALTIME[:-10] + b"\x00"), "truncated", 24 + 6 + 30 + 38 + 1),  # cut demand
        (_at(LOGIN, 24 + 6 + 2 + 20 + 23, 0), "bad_field", 24 + 6 + 2 + 20 + 23),  # 0 connectors
        (_at(LOGIN, 24 + 6 + 2 + 20 + 23 + 1 + 26, 9), "bad_field", 24 + 6 + 2 + 43 + 27),
    ],
)
def test_rejections_have_their_documented_reason_and_offset(
    frame: bytes, reason: str, offset: int
) -> None:
    with pytest.raises(FrameError) as exc:
        decode_charger_frame(frame)
    assert (exc.value.reason, exc.value.offset) == (reason, offset)


def test_heartbeat_response_and_encrypted_frames_carry_no_rows() -> None:
    beat = _reframe(bytes.fromhex("2323 07 fe" + CHARGER + "01 0000 00"))
    assert decode_charger_frame(beat).command == 0x07
    ack = _reframe(bytes.fromhex("2323 02 01" + CHARGER + "01 0006 190301 0a0000 00"))
    f = decode_charger_frame(ack)
    assert (f.response, f.time, f.tail) == (0x01, T0, None)
    assert decode_charger_rows(ack).statuses == []
    enc = _reframe(bytes.fromhex("2323 02 fe" + CHARGER + "03 0004 deadbeef 00"))
    rows = decode_charger_rows(enc)
    assert rows.encrypted and rows.telemetry == [] and rows.charger_id == "MA01H3BQ2P0000001"
    assert decode_charger_frame(enc).tail == bytes.fromhex("deadbeef")
