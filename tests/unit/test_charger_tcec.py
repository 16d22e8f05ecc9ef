"""T/CEC 102 pushes: samples built from the published field lists (docs/protocols/charger.md,
"T/CEC 102 pushes"), and bad and partial messages, each rejected with its named reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest

from contract.clock import CHINA_TZ
from ingest.decoders import FrameError
from ingest.decoders.charger import decode_tcec, parse_tcec_timestamp, push_time

pytestmark = pytest.mark.unit

OP = "MA01H3BQ2"
CID = "MA01H3BQ2P000000101"
SEQ = "MA01H3BQ2202503011000000001"  # OperatorID + 18 = 27
PUSHED = datetime(2025, 3, 1, 10, 0, 5, tzinfo=CHINA_TZ)

STATUS: dict[str, Any] = {
    "ConnectorStatusInfo": {"ConnectorID": CID, "Status": 3, "ParkStatus": 50, "LockStatus": 10}
}
CHARGE_STATUS: dict[str, Any] = {
    "StartChargeSeq": SEQ,
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
    "EndTime": "2025-03-01 10:00:00",
    "TotalPower": 25.125,
    "ElecMoney": 20.1,
    "SeviceMoney": 10.05,
    "TotalMoney": 30.15,
    "SumPeriod": 1,
    "ChargeDetails": [
        {
            "DetailStartTime": "2025-03-01 09:30:00",
            "DetailEndTime": "2025-03-01 10:00:00",
            "ElecPrice": 0.8,
            "SevicePrice": 0.4,
            "DetailPower": 25.125,
            "DetailElecMoney": 20.1,
            "DetailSeviceMoney": 10.05,
        }
    ],
}
ORDER: dict[str, Any] = {
    "StartChargeSeq": SEQ,
    "ConnectorID": CID,
    "StartTime": "2025-03-01 09:30:00",
    "EndTime": "2025-03-01 10:30:00",
    "TotalPower": 50.25,
    "TotalElecMoney": 40.2,
    "TotalSeviceMoney": 20.1,
    "TotalMoney": 60.3,
    "StopReason": 2,
    "SumPeriod": 1,
    "ChargeDetails": [],
}
STATION: dict[str, Any] = {
    "StationInfo": {
        "StationID": "3101150001",
        "OperatorID": OP,
        "EquipmentOwnerID": OP,
        "StationName": "Demo station",
        "StationStatus": 50,
        "EquipmentInfos": [
            {
                "EquipmentID": "3101150001000001",
                "EquipmentType": 1,
                "ConnectorInfos": [
                    {
                        "ConnectorID": CID,
                        "ConnectorName": "gun 1",
                        "ConnectorType": 4,
                        "VoltageUpperLimits": 1000,
                        "VoltageLowerLimits": 200,
                        "Current": 250,
                        "Power": 125.0,
                        "NationalStandard": 2,
                    }
                ],
            }
        ],
    }
}


def _decode(doc: Any, interface: str) -> Any:
    return decode_tcec(orjson.dumps(doc), interface, OP, PUSHED)


def test_station_status_push_is_a_status_row_at_the_push_time() -> None:
    rows = _decode(STATUS, "notification_stationStatus")
    assert [tuple(r) for r in rows.statuses] == [(OP, CID, PUSHED, 3, 50, 10, "tcec")]
    listed = {
        "ConnectorStatusInfo": [STATUS["ConnectorStatusInfo"], {"ConnectorID": "X2", "Status": 255}]
    }
    rows = _decode(listed, "notification_stationStatus")
    assert [(r.connector_id, r.status, r.park_status) for r in rows.statuses] == [
        (CID, 3, 50),
        ("X2", 255, None),
    ]


def test_charge_status_push_gives_telemetry_session_progress_and_status() -> None:
    rows = _decode(CHARGE_STATUS, "notification_equip_charge_status")
    ts = datetime(2025, 3, 1, 10, 0, tzinfo=CHINA_TZ)
    (t,) = rows.telemetry
    assert (t.connector_id, t.ts, t.voltage_v, t.current_a, t.energy_kwh, t.soc_pct) == (
        CID, ts, 400.0, 125.5, 25.125, 55.5,
    )  # fmt: skip
    assert (t.power_kw, t.bms_voltage_demand_v, t.vin) == (None, None, None)  # not carried
    (s,) = rows.sessions
    assert (s.start_charge_seq, s.event, s.state, s.energy_kwh, s.service_money) == (
        SEQ, "progress", 2, 25.125, 10.05,
    )  # fmt: skip
    assert s.start_time == datetime(2025, 3, 1, 9, 30, tzinfo=CHINA_TZ)
    assert [(r.status, r.ts) for r in rows.statuses] == [(3, ts)]


def test_completed_order_is_an_order_row_at_its_end_time() -> None:
    (s,) = _decode(ORDER, "notification_charge_order_info").sessions
    assert (s.event, s.state, s.energy_kwh, s.total_money, s.stop_reason) == (
        "order", None, 50.25, 60.3, 2,
    )  # fmt: skip
    assert s.ts == s.end_time == datetime(2025, 3, 1, 10, 30, tzinfo=CHINA_TZ)


def test_station_info_registers_connectors() -> None:
    (c,) = _decode(STATION, "notification_stationInfo").connectors
    assert tuple(c) == (
        OP, CID, PUSHED, "3101150001", "3101150001000001", None, 4, 1000, 200, 250, 125.0, 2,
        "tcec",
    )  # fmt: skip


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def _with(doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {**doc, **kw}


# One case per broken rule, each a whole (document, interface, reason) triple (``duplicates``
# pairs neighbouring cases by shape): the table is the specification under test.
@pytest.mark.parametrize(
    ("data", "interface", "reason"),
    [
        (b'{"ConnectorStatusInfo": {', "notification_stationStatus", "bad_json"),
        (b"[1, 2]", "notification_stationStatus", "bad_json"),
        (orjson.dumps(STATUS), "notification_stationStatus_v2", "unknown_interface"),
        (b"{}", "notification_stationStatus", "missing_field"),
        (
            orjson.dumps({"ConnectorStatusInfo": {"ConnectorID": CID}}),
            "notification_stationStatus",
            "missing_field",
        ),
        (
            orjson.dumps({"ConnectorStatusInfo": {"ConnectorID": CID, "Status": 5}}),
            "notification_stationStatus",
            "bad_code",
        ),
        (
            orjson.dumps({"ConnectorStatusInfo": {"ConnectorID": CID, "Status": True}}),
            "notification_stationStatus",
            "bad_code",
        ),
        (
            # partial: the second entry is bad, so the whole message is rejected
            orjson.dumps({"ConnectorStatusInfo": [STATUS["ConnectorStatusInfo"], {"Status": 1}]}),
            "notification_stationStatus",
            "missing_field",
        ),
        (
            orjson.dumps({"ConnectorStatusInfo": {"ConnectorID": 42, "Status": 1}}),
            "notification_stationStatus",
            "bad_field",
        ),
        (
            orjson.dumps(_without(CHARGE_STATUS, "TotalPower")),
            "notification_equip_charge_status",
            "missing_field",
        ),
        (
            orjson.dumps(_with(CHARGE_STATUS, StartChargeSeqStat=6)),
            "notification_equip_charge_status",
            "bad_code",
        ),
        (
            orjson.dumps(_with(CHARGE_STATUS, EndTime="2025-03-01T10:00:00")),
            "notification_equip_charge_status",
            "bad_time",
        ),
        (
            orjson.dumps(_with(CHARGE_STATUS, EndTime="2025-02-30 10:00:00")),
            "notification_equip_charge_status",
            "bad_time",
        ),
        (
            orjson.dumps(_with(CHARGE_STATUS, CurrentA="125.5")),
            "notification_equip_charge_status",
            "bad_field",
        ),
        (
            orjson.dumps(_with(CHARGE_STATUS, StartChargeSeq="short")),
            "notification_equip_charge_status",
            "bad_field",
        ),
        (
            orjson.dumps(_with(CHARGE_STATUS, Soc=101)),
            "notification_equip_charge_status",
            "bad_field",
        ),
        (
            orjson.dumps(_without(ORDER, "StopReason")),
            "notification_charge_order_info",
            "missing_field",
        ),
        (
            orjson.dumps(_with(ORDER, EndTime="2025-03-01 09:00:00")),
            "notification_charge_order_info",
            "bad_time",
        ),
        (
            orjson.dumps(_with(ORDER, TotalMoney=None)),
            "notification_charge_order_info",
            "missing_field",
        ),
        (
            orjson.dumps(
                {
                    "StationInfo": {
                        "StationID": "1",
                        "EquipmentInfos": [
                            {
                                "EquipmentID": "E",
                                "ConnectorInfos": [
                                    {
                                        "ConnectorID": CID,
                                        "ConnectorType": 9,
                                        "VoltageUpperLimits": 1,
                                        "VoltageLowerLimits": 1,
                                        "Current": 1,
                                        "Power": 1,
                                    }
                                ],
                            }
                        ],
                    }
                }
            ),
            "notification_stationInfo",
            "bad_code",
        ),
    ],
)
def test_bad_and_partial_messages_are_rejected_with_their_reason(
    data: bytes, interface: str, reason: str
) -> None:
    with pytest.raises(FrameError) as exc:
        decode_tcec(data, interface, OP, PUSHED)
    assert exc.value.reason == reason


def test_a_bad_operator_header_is_rejected() -> None:
    with pytest.raises(FrameError) as exc:
        decode_tcec(orjson.dumps(STATUS), "notification_stationStatus", "MA01", PUSHED)
    assert exc.value.reason == "bad_field"


def test_the_envelope_timestamp_header_is_read_as_beijing_time() -> None:
    assert parse_tcec_timestamp("20250301100000") == datetime(2025, 3, 1, 10, tzinfo=CHINA_TZ)
    for bad in ("2025-03-01 10:00:00", "20250230100000", "2025030110000", "２0250301100000"):
        with pytest.raises(FrameError) as info:
            parse_tcec_timestamp(bad)
        assert (info.value.reason, info.value.offset) == ("bad_time", 0)


def _station_with(**connector: Any) -> dict[str, Any]:
    info = STATION["StationInfo"]
    equipment = info["EquipmentInfos"][0]
    c = {**equipment["ConnectorInfos"][0], **connector}
    eq = {**equipment, "ConnectorInfos": [c]}
    return {"StationInfo": {**info, "EquipmentInfos": [eq]}}


@pytest.mark.parametrize(
    ("doc", "interface"),
    [
        (_with(CHARGE_STATUS, VoltageA=1e39), "notification_equip_charge_status"),
        (_with(CHARGE_STATUS, CurrentA=-1e39), "notification_equip_charge_status"),
        (_with(ORDER, TotalPower=1e300), "notification_charge_order_info"),
        (_station_with(Current=2**31), "notification_stationInfo"),
        (_station_with(VoltageUpperLimits=1e300), "notification_stationInfo"),
        (_station_with(Power=1e39), "notification_stationInfo"),
    ],
)
def test_a_number_that_does_not_fit_its_column_is_a_bad_field(
    doc: dict[str, Any], interface: str
) -> None:
    # Accepted, it would fail the COPY (real / integer overflow) and the batch be bisected:
    # the decoder is where a push's values are judged.
    with pytest.raises(FrameError) as exc:
        _decode(doc, interface)
    assert exc.value.reason == "bad_field"


def test_the_largest_numbers_that_fit_are_taken() -> None:
    rows = _decode(_station_with(Current=2**31 - 1, Power=3.0e38), "notification_stationInfo")
    assert (rows.connectors[0].current_a, rows.connectors[0].power_kw) == (2**31 - 1, 3.0e38)


# orjson reads a JSON int up to 2**64 - 1 (down to -2**63) as an int: beyond 2**53 a double
# cannot hold it exactly, and the native rule runner refused it where the Python one compared it.
@pytest.mark.parametrize("number", [5, 0, -5, 2**53, 2**53 + 1, -(2**53 + 1), -(2**63), 2**64 - 1])
def test_a_number_written_as_an_int_is_a_float(number: int) -> None:
    money = {"ElecMoney": number, "SeviceMoney": number, "TotalMoney": number}
    doc = _with(CHARGE_STATUS, CurrentA=number, VoltageA=number, TotalPower=number, **money)
    rows = _decode(doc, "notification_equip_charge_status")
    ((t,), (s,)) = (rows.telemetry, rows.sessions)
    order = _with(ORDER, TotalPower=number, TotalElecMoney=number, TotalSeviceMoney=number)
    (o,) = _decode(_with(order, TotalMoney=number), "notification_charge_order_info").sessions
    (c,) = _decode(_station_with(Power=number), "notification_stationInfo").connectors
    values = [t.voltage_v, t.current_a, t.energy_kwh, s.energy_kwh, s.elec_money, s.service_money]
    values += [s.total_money, o.energy_kwh, o.elec_money, o.service_money, o.total_money]
    values.append(c.power_kw)
    assert [(type(v), v) for v in values] == [(float, float(number))] * len(values)


def test_soc_written_as_an_int_is_a_float_and_integer_columns_stay_ints() -> None:
    (t,) = _decode(_with(CHARGE_STATUS, Soc=55), "notification_equip_charge_status").telemetry
    assert (type(t.soc_pct), t.soc_pct) == (float, 55.0)
    (c,) = _decode(_station_with(Current=250.0), "notification_stationInfo").connectors
    assert [(type(v), v) for v in (c.voltage_upper_v, c.current_a)] == [(int, 1000), (int, 250)]


@pytest.mark.parametrize(
    ("key", "column"),
    [
        ("VoltageUpperLimits", "voltage_upper_v"),
        ("VoltageLowerLimits", "voltage_lower_v"),
        ("Current", "current_a"),
    ],
)
def test_a_fraction_of_an_integer_column_is_a_bad_field(key: str, column: str) -> None:
    # int() truncated 750.9 to 750 without a word; 750.0 is 750 (a JSON number is a double).
    with pytest.raises(FrameError) as exc:
        _decode(_station_with(**{key: 750.9}), "notification_stationInfo")
    assert exc.value.reason == "bad_field"
    assert exc.value.detail.endswith(f"{key} = 750.9 must be a whole number (an integer column)")
    (c,) = _decode(_station_with(**{key: 750.0}), "notification_stationInfo").connectors
    assert (type(getattr(c, column)), getattr(c, column)) == (int, 750)


@pytest.mark.parametrize(("soc", "shown"), [(150, "150"), (2**64 - 1, "18446744073709551615")])
def test_a_soc_out_of_range_is_shown_as_sent(soc: int, shown: str) -> None:
    # The message once showed the float it became: "150.0", "1.8446744073709552e+19".
    with pytest.raises(FrameError) as exc:
        _decode(_with(CHARGE_STATUS, Soc=soc), "notification_equip_charge_status")
    assert exc.value.reason == "bad_field"
    assert exc.value.detail == f"Soc = {shown} is not 0..100"


def test_an_int_beyond_2_53_is_the_double_its_decimal_spelling_gives() -> None:
    # 2**53 + 1 lies halfway between two doubles: written either way, it is the same row.
    energies = []
    for spelling in (b"9007199254740993", b"9007199254740993.0"):
        data = orjson.dumps(CHARGE_STATUS).replace(
            b'"TotalPower":25.125', b'"TotalPower":' + spelling
        )
        rows = decode_tcec(data, "notification_equip_charge_status", OP, PUSHED)
        energies.append(rows.telemetry[0].energy_kwh)
    assert energies == [float(2**53)] * 2 and type(energies[0]) is float


@pytest.mark.parametrize(
    "when",
    [
        "2025-03-01 10:00-05",  # 10:00 at UTC-5 to fromisoformat: its offset was replaced
        "2025-03-01 10:00+08",
        "2025-03-01 10:00:0Z",
        "2025-03-01 10:00.01",
        "2025-03-01 1:00:00 ",
        "2025-03-01 ١٠:00:00",  # Arabic-Indic digits: not ASCII
        "2025-03-01 10:00:00+08:00",
        "2025-03-01",
    ],
)
def test_a_time_of_another_shape_is_bad_time(when: str) -> None:
    # "yyyy-MM-dd HH:mm:ss" (Beijing time) and nothing else: an offset is not silently
    # replaced by +08:00.
    doc = _with(CHARGE_STATUS, StartTime="2025-03-01 09:00:00", EndTime=when)
    with pytest.raises(FrameError) as exc:
        decode_tcec(orjson.dumps(doc), "notification_equip_charge_status", OP, PUSHED)
    assert exc.value.reason == "bad_time"
    assert "expected 'yyyy-MM-dd HH:mm:ss'" in exc.value.detail


@pytest.mark.parametrize("cid", ["C1 ", " C1", "C 1", "   ", "C1\t", "C1\u00a0", ""])
def test_an_identifier_with_a_space_or_other_blank_is_bad_field(cid: str) -> None:
    # The profile's rule, 0x21..0x7E: "C1 " is not another connector than "C1", nor "   " one.
    doc = {"ConnectorStatusInfo": {"ConnectorID": cid, "Status": 1}}
    with pytest.raises(FrameError) as exc:
        decode_tcec(orjson.dumps(doc), "notification_stationStatus", OP, PUSHED)
    assert exc.value.reason == "bad_field"
    assert "0x21..0x7E, no spaces" in exc.value.detail


def test_an_empty_optional_field_is_not_given() -> None:
    # Platforms send "" for what they do not fill: no VIN, no money, not a rejection.
    blank = _with(CHARGE_STATUS, Vin="", ElecMoney="", TotalMoney=None)
    rows = decode_tcec(orjson.dumps(blank), "notification_equip_charge_status", OP, PUSHED)
    assert rows.telemetry[0].vin is None and rows.sessions[0].vin is None
    assert (rows.sessions[0].elec_money, rows.sessions[0].total_money) == (None, None)
    order = decode_tcec(orjson.dumps(_with(ORDER, Vin="")), "notification_charge_order_info", OP,
                        PUSHED)  # fmt: skip
    assert order.sessions[0].vin is None
    status = {"ConnectorStatusInfo": {"ConnectorID": CID, "Status": 1, "ParkStatus": ""}}
    rows = decode_tcec(orjson.dumps(status), "notification_stationStatus", OP, PUSHED)
    assert rows.statuses[0].park_status is None


@pytest.mark.parametrize(
    "vin", ["LSVAU218", "lsvau2180n2183294", "LSVAU2180N218329 ", 17, "LSVAU2180N2183294X"]
)
def test_a_given_vin_is_17_digits_or_upper_case_letters(vin: Any) -> None:
    doc = _with(CHARGE_STATUS, Vin=vin)
    with pytest.raises(FrameError) as exc:
        decode_tcec(orjson.dumps(doc), "notification_equip_charge_status", OP, PUSHED)
    assert exc.value.reason == "bad_field" and "17 digits / upper-case letters" in exc.value.detail
    good = decode_tcec(orjson.dumps(_with(CHARGE_STATUS, Vin="LSVAU2180N2183294")),
                       "notification_equip_charge_status", OP, PUSHED)  # fmt: skip
    assert good.telemetry[0].vin == "LSVAU2180N2183294"


@pytest.mark.parametrize(
    "interface", ["notification_equip_charge_status", "notification_charge_order_info"]
)
@pytest.mark.parametrize(
    ("field", "when"),
    [
        ("StartTime", "0001-01-01 00:00:00"),  # .NET DateTime.MinValue: overflowed asyncpg
        ("StartTime", "1999-12-31 23:59:59"),
        ("StartTime", "2000-01-01 07:59:59"),  # Beijing time: still 1999 in UTC
        ("EndTime", "1970-01-01 08:00:00"),
    ],
)
def test_a_time_before_2000_is_bad_time(interface: str, field: str, when: str) -> None:
    doc = CHARGE_STATUS if interface == "notification_equip_charge_status" else ORDER
    # StartTime before 2000 must not hide behind "EndTime is before StartTime".
    with pytest.raises(FrameError) as exc:
        decode_tcec(orjson.dumps(_with(doc, **{field: when})), interface, OP, PUSHED)
    assert exc.value.reason == "bad_time"
    assert field in exc.value.detail and "2000" in exc.value.detail


def test_the_first_second_of_2000_is_a_time() -> None:
    doc = _with(CHARGE_STATUS, StartTime="2000-01-01 08:00:00")  # 2000-01-01T00:00:00Z
    rows = decode_tcec(orjson.dumps(doc), "notification_equip_charge_status", OP, PUSHED)
    assert rows.sessions[0].start_time == datetime(2000, 1, 1, 8, tzinfo=CHINA_TZ)


@pytest.mark.parametrize("start", ["2025-03-01 10:00:01", "2099-01-01 00:00:00"])
def test_a_charge_status_that_starts_after_its_sample_is_bad_time(start: str) -> None:
    # As charge_order_info has it: EndTime (the sample) before StartTime is refused, so a
    # StartTime ahead of the stored window never becomes a session's start.
    doc = _with(CHARGE_STATUS, StartTime=start)
    with pytest.raises(FrameError) as exc:
        decode_tcec(orjson.dumps(doc), "notification_equip_charge_status", OP, PUSHED)
    assert exc.value.reason == "bad_time"
    assert "before StartTime" in exc.value.detail


def test_a_charge_status_sampled_at_its_start_is_kept() -> None:
    doc = _with(CHARGE_STATUS, StartTime=CHARGE_STATUS["EndTime"])
    rows = decode_tcec(orjson.dumps(doc), "notification_equip_charge_status", OP, PUSHED)
    assert rows.sessions[0].start_time == rows.sessions[0].ts


def test_charge_status_rows_are_at_end_time_plus_the_seq_in_microseconds() -> None:
    # pushed_at is push_time(TimeStamp, Seq): its microseconds are the Seq.
    pushed = push_time("20250301100005", "0042")
    rows = decode_tcec(orjson.dumps(CHARGE_STATUS), "notification_equip_charge_status", OP, pushed)
    at = datetime(2025, 3, 1, 10, 0, 0, 42, tzinfo=CHINA_TZ)
    times = [rows.statuses[0].ts, rows.telemetry[0].ts, rows.sessions[0].ts]
    assert times == [at] * 3
    assert rows.sessions[0].start_time == datetime(2025, 3, 1, 9, 30, tzinfo=CHINA_TZ)


@pytest.mark.parametrize(
    ("doc", "interface"),
    [
        (CHARGE_STATUS, "notification_equip_charge_status"),
        (ORDER, "notification_charge_order_info"),
    ],
)
def test_a_start_charge_seq_of_another_operator_is_bad_field(
    doc: dict[str, Any], interface: str
) -> None:
    # "OperatorID + 18": ZZ9999999 numbering an order under MA01H3BQ2's prefix would suppress
    # MA01H3BQ2's real order of the same EndTime (the session key has no operator).
    foreign = _with(doc, StartChargeSeq="ZZ9999999" + SEQ[9:])
    with pytest.raises(FrameError) as exc:
        decode_tcec(orjson.dumps(foreign), interface, OP, PUSHED)
    assert exc.value.reason == "bad_field"
    assert "must begin with the OperatorID MA01H3BQ2" in exc.value.detail
    with pytest.raises(FrameError):
        decode_tcec(orjson.dumps(doc), interface, "ZZ9999999", PUSHED)


@pytest.mark.parametrize("operator", ["ma01h3bq2", "Ma01H3BQ2", "MA01H3BQ\u00b2", "MA01-3BQ2"])
def test_an_operator_id_is_nine_digits_or_upper_case_letters(operator: str) -> None:
    # The organisation code's alphabet; account_scopes (roles grant --scope) holds only these,
    # so rows stored under a lower-case operator could never be shown to their operator.
    with pytest.raises(FrameError) as exc:
        decode_tcec(orjson.dumps(STATUS), "notification_stationStatus", operator, PUSHED)
    assert exc.value.reason == "bad_field"
    assert "upper-case" in exc.value.detail
