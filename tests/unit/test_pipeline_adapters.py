"""The raw topics' decoders as the batch builder calls them: every kind decodes to its own
object; T/CEC 102 pushes read their headers (missing or malformed ones dead-letter with a
named reason before the JSON is read), get the rows' time as frame time (the window applies)
and their receive time; frames with a bad identity are the decoders' ``bad_identity``."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.clock import CHINA_TZ
from contract.rows import FrameRows
from devtools.sim.envelope import frame, reseal
from devtools.sim.fleet import SimVehicle
from ingest.config import Settings
from ingest.decoders.charger import TCEC_REASONS, parse_tcec_timestamp
from ingest.decoders.encoder import encode_frame
from ingest.decoders.errors import BAD_IDENTITY, ENCRYPTED_UNSUPPORTED, REASONS, FrameError
from ingest.pipeline import wire
from ingest.pipeline.adapters import decode_tcec_record
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.process import DECODERS, decoders_for, raw_topic_keys, topic_kinds
from ingest.pipeline.timewindow import TimeWindow
from tests.kinds_traffic import (
    charge_status,
    charger_realtime,
    connector,
    order_info,
    pack_code,
    pack_realtime,
    received,
    station_status,
    tcec_headers,
)
from tests.unit.kafka_records import TP, Rec

pytestmark = pytest.mark.unit

NOW = 1_796_520_000_000  # 2026-12-06 (UTC)
S = Settings()
VEHICLE, CHARGER, TCEC, BATTERY = (
    S.kafka.topic_vehicle,
    S.kafka.topic_charger,
    S.kafka.topic_tcec,
    S.kafka.topic_battery,
)
STATUS = "notification_stationStatus"
CHARGE = "notification_equip_charge_status"


def test_every_raw_topic_has_its_decoder_and_kind() -> None:
    assert set(DECODERS) == {"vehicle", "charger", "tcec", "battery"}
    assert topic_kinds(S) == {
        "nev.vehicle.raw": "vehicle",
        "nev.charger.raw": "charger",
        "nev.charger.tcec": "charger",
        "nev.battery.raw": "battery",
    }
    assert raw_topic_keys(S)["nev.charger.tcec"] == "kafka.topic_tcec"
    assert set(S.kafka.topic_partitions()) >= set(decoders_for(S))


def test_pipeline_reasons_do_not_clash_with_the_decoders() -> None:
    assert not wire.PIPELINE_REASONS & (REASONS | TCEC_REASONS)
    assert {wire.MISSING_HEADER, wire.BAD_HEADER} <= wire.PIPELINE_REASONS


def _batch(records: list[Rec], window: TimeWindow | None = None) -> BatchBuilder:
    builder = BatchBuilder(decoders_for(S), window=window, clock_ms=lambda: NOW)
    for rec in records:
        builder.add(TP(rec.topic, rec.partition), [rec], start=None)
    return builder


def test_one_batch_mixes_every_kind() -> None:
    car = SimVehicle("LSVAU2180N2180001", random.Random(1), 2016)
    car.step(10.0)
    vehicle = encode_frame(car.frame(NOW - 5000))
    records = [
        Rec(VEHICLE, 0, 0, vehicle, headers=received(NOW)),
        Rec(CHARGER, 0, 0, charger_realtime(NOW - 4000, connector(1)), headers=received(NOW)),
        Rec(BATTERY, 0, 0, pack_realtime(NOW - 3000, pack_code(1)), headers=received(NOW)),
        Rec(TCEC, 0, 0, station_status(connector(2), 1), headers=tcec_headers(STATUS, NOW)),
    ]
    batch = _batch(records).take()
    assert not batch.dead
    kinds = [type(f) for f in batch.frames]
    assert kinds == [FrameRows, ChargerRows, PackFrameRows, ChargerRows]
    assert [f.ts_ms for f in batch.frames] == [NOW - 5000, NOW - 4000, NOW - 3000, NOW]
    assert batch.decoded == {VEHICLE: 1, CHARGER: 1, BATTERY: 1, TCEC: 1}


def test_a_tcec_push_takes_its_time_and_receive_time() -> None:
    sample = NOW - 60_000
    value = charge_status(sample, connector(1), 7, NOW - 600_000, 4.5, 61.5)
    rows = decode_tcec_record(value, NOW, tcec_headers(CHARGE, NOW))
    assert rows.ts_ms == sample  # EndTime, the sample's time: not the push's
    (tele,) = rows.telemetry
    assert tele.received_at == datetime.fromtimestamp(NOW / 1000, UTC)
    assert tele.energy_kwh == 4.5 and tele.soc_pct == 61.5
    (status,) = rows.statuses
    assert status.ts == datetime.fromtimestamp(sample / 1000, CHINA_TZ)
    order = order_info(connector(1), 7, NOW - 600_000, NOW - 1000, 9.0)
    done = decode_tcec_record(order, NOW, tcec_headers("notification_charge_order_info", NOW))
    assert done.ts_ms == NOW - 1000 and done.sessions[0].event == "order"


def _reason(headers: list[tuple[str, bytes]], value: bytes | None = None) -> str:
    with pytest.raises(FrameError) as exc:
        decode_tcec_record(value or station_status(connector(1), 3), NOW, headers)
    return exc.value.reason


def _without(name: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in tcec_headers(STATUS, NOW) if k != name]


def _with(name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in tcec_headers(STATUS, NOW)]


@pytest.mark.parametrize("name", wire.TCEC_HEADERS)
def test_a_missing_tcec_header_is_missing_header(name: str) -> None:
    assert _reason(_without(name)) == wire.MISSING_HEADER
    assert _reason(_with(name, b"")) == wire.MISSING_HEADER


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (wire.TCEC_OPERATOR_ID, b"MA01H3BQ"),  # 8 characters
        (wire.TCEC_OPERATOR_ID, b"MA01H3BQ2X"),
        (wire.TCEC_OPERATOR_ID, b"MA01-3BQ2"),
        (wire.TCEC_OPERATOR_ID, b"ma01h3bq2"),  # upper case only: the organisation code's
        (wire.TCEC_OPERATOR_ID, b"\xff\xfe"),  # not UTF-8
        (wire.TCEC_TIMESTAMP, b"2026-12-06 10:00:00"),
        (wire.TCEC_TIMESTAMP, b"20261306100000"),  # month 13
        (wire.TCEC_TIMESTAMP, b"1796520000000"),  # epoch ms, not the envelope's form
        (wire.TCEC_INTERFACE, "notification_é".encode()),
    ],
)
def test_a_malformed_tcec_header_is_bad_header(name: str, value: bytes) -> None:
    assert _reason(_with(name, value)) == wire.BAD_HEADER


@pytest.mark.parametrize(
    "value", [b"20260230100000", b"20261306100000", b"2026120610000", b"2026-12-06 10:00:00"]
)
def test_the_timestamp_header_is_judged_by_the_decoders_one_parser(value: bytes) -> None:
    # One definition of the envelope TimeStamp (ingest.decoders.charger): the pipeline reports
    # what it says, as bad_header (a header, not the push's JSON, is wrong).
    with pytest.raises(FrameError) as theirs:
        parse_tcec_timestamp(value.decode())
    with pytest.raises(FrameError) as ours:
        decode_tcec_record(station_status(connector(1), 3), NOW, _with(wire.TCEC_TIMESTAMP, value))
    assert (theirs.value.reason, ours.value.reason) == ("bad_time", wire.BAD_HEADER)
    assert ours.value.detail == f"header {wire.TCEC_TIMESTAMP}: {theirs.value.detail}"


def test_the_seq_header_sets_a_status_push_apart_within_its_second() -> None:
    # Two pushes of one TimeStamp: Seq (microseconds) keeps their rows' times apart and in
    # order; without the header (an older gateway) the time is the TimeStamp's.
    def at(*extra: tuple[str, bytes]) -> datetime:
        headers = [*tcec_headers(STATUS, NOW), *extra]
        return decode_tcec_record(station_status(connector(1), 3), NOW, headers).statuses[0].ts

    plain = at()
    assert plain == datetime.fromtimestamp(NOW // 1000, UTC)
    assert at((wire.TCEC_SEQ, b"0001")) - plain == timedelta(microseconds=1)
    assert at((wire.TCEC_SEQ, b"0002")) - plain == timedelta(microseconds=2)
    for bad in (b"", b"12", b"12345", b"00a1"):
        with pytest.raises(FrameError) as exc:
            at((wire.TCEC_SEQ, bad))
        assert exc.value.reason == wire.BAD_HEADER
        assert exc.value.detail.startswith(f"header {wire.TCEC_SEQ}: Seq ")


def test_what_the_json_holds_is_the_decoders_to_judge() -> None:
    assert _reason(_with(wire.TCEC_INTERFACE, b"notification_nope")) == "unknown_interface"
    assert _reason(tcec_headers(STATUS, NOW), b"{not json") == "bad_json"
    assert _reason(tcec_headers(STATUS, NOW), b'{"ConnectorStatusInfo": {}}') == "missing_field"


def test_tcec_pushes_dead_letter_with_their_reason_and_headers() -> None:
    records = [
        Rec(TCEC, 0, 0, station_status(connector(1), 3), headers=_without(wire.TCEC_TIMESTAMP)),
        Rec(
            TCEC, 0, 1, b'{"ConnectorStatusInfo": {"Status": 3}}', headers=tcec_headers(STATUS, NOW)
        ),
        Rec(TCEC, 0, 2, station_status(connector(1), 3), headers=tcec_headers(STATUS, NOW)),
    ]
    batch = _batch(records).take()
    assert len(batch.frames) == 1
    assert batch.dead_reasons == {(TCEC, wire.MISSING_HEADER): 1, (TCEC, "missing_field"): 1}
    letter = batch.dead[0]
    assert wire.header(letter.headers, wire.TCEC_INTERFACE) == STATUS.encode()  # kept as sent
    assert b"tcec_timestamp" in (wire.header(letter.headers, wire.ERROR_DETAIL) or b"")


def test_the_time_window_applies_to_every_kind() -> None:
    old = datetime(2019, 3, 14, tzinfo=UTC).timestamp() * 1000
    old_ms = int(old)
    window = TimeWindow(max_age_ms=365 * 86_400_000, max_future_ms=600_000)
    records = [
        Rec(CHARGER, 0, 0, charger_realtime(old_ms, connector(1)), headers=received(NOW)),
        Rec(BATTERY, 0, 0, pack_realtime(NOW + 3_600_000, pack_code(1)), headers=received(NOW)),
        # a progress push sampled in 2019, pushed now: its rows' time counts, not the push's
        Rec(
            TCEC,
            0,
            0,
            charge_status(old_ms, connector(1), 1, old_ms - 60_000, 1.0, 50),
            headers=tcec_headers(CHARGE, NOW),
        ),
        Rec(TCEC, 0, 1, station_status(connector(1), 1), headers=tcec_headers(STATUS, NOW)),
    ]
    batch = _batch(records, window).take()
    assert batch.dead_reasons == {
        (CHARGER, wire.TIME_OUT_OF_WINDOW): 1,
        (BATTERY, wire.TIME_OUT_OF_WINDOW): 1,
        (TCEC, wire.TIME_OUT_OF_WINDOW): 1,
    }
    assert len(batch.frames) == 1


def test_a_bad_identity_is_the_decoders_frame_error() -> None:
    charger = bytearray(charger_realtime(NOW, connector(1)))
    charger[4] = ord("m")  # OperatorID: digits and upper-case letters only
    pack = bytearray(pack_realtime(NOW, pack_code(1)))
    pack[4:6] = b"\x00\x00"  # the header ID: no printable code
    records = [
        Rec(CHARGER, 0, 0, reseal(charger), headers=received(NOW)),
        Rec(BATTERY, 0, 0, reseal(pack), headers=received(NOW)),
    ]
    batch = _batch(records).take()
    assert batch.frames == []
    assert batch.dead_reasons == {(CHARGER, BAD_IDENTITY): 1, (BATTERY, BAD_IDENTITY): 1}


# Charger and pack decoders keep a data unit they cannot read opaque (rows marked encrypted,
# with nothing in them): committed without a row or a letter, it was lost. The vehicle topic
# had this from the signature gate alone.
UNREADABLE = (0x03, 0xFE, 0xFF, 0x07)  # AES-128, abnormal, invalid, reserved


@pytest.mark.parametrize("topic", [CHARGER, BATTERY])
def test_an_unreadable_data_unit_is_dead_lettered_encrypted_unsupported(topic: str) -> None:
    def plain(ms: int) -> bytes:
        if topic == CHARGER:
            return charger_realtime(ms, connector(1))
        return pack_realtime(ms, pack_code(1))

    values = [plain(NOW - 1000)]
    for k, byte in enumerate(UNREADABLE):
        marked = bytearray(plain(NOW - 2000 - k))
        marked[21] = byte
        values.append(reseal(marked))
    # A heartbeat with an empty unit loses nothing: kept, as on the vehicle topic.
    header_id = values[0][4:21].decode()
    values.append(frame(2016, 0x07, header_id, b"", encryption=0xFE))
    records = [Rec(topic, 0, i, v, headers=received(NOW)) for i, v in enumerate(values)]
    builder = BatchBuilder(decoders_for(S), clock_ms=lambda: NOW)
    builder.add(TP(topic, 0), records, start=None)
    batch = builder.take()
    assert batch.dead_reasons == {(topic, ENCRYPTED_UNSUPPORTED): len(UNREADABLE)}
    assert {d.value for d in batch.dead} == set(values[1:-1])  # intact, for a replay
    details = [wire.header(d.headers, wire.ERROR_DETAIL) or b"" for d in batch.dead]
    assert b"AES-128" in details[0] and b"(a reserved value)" in details[3]
    assert len(batch.frames) == 2 and batch.decoded == {topic: 2}
