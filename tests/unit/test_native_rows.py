"""The rows of the native hot path (``ingest.decoders.fast.decode_rows``, was the Python fast
path's test_fast.py): golden rows checked by hand against the standard, sentinels, pack joins
and paging, partial / encrypted / response frames, every rejection reason, and "nothing but
FrameError" on any bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.clock import CHINA_TZ
from contract.rows import FrameRows, cell_voltages_mv, probe_temps_c
from devtools.sim.framebuilder import TIME_HEX, build
from ingest.decoders.errors import FRAME_REASONS, REASONS, FrameError
from ingest.decoders.fast import decode_rows, decode_rows_batch
from tests.unit.vectors_support import load_vectors

pytestmark = pytest.mark.unit


RECEIVED = datetime(2025, 10, 11, 11, 8, 19, tzinfo=UTC)
VECTORS = load_vectors()


def vector(index: int) -> bytes:
    return bytes.fromhex(VECTORS[index]["hex"])


def cells(*mv: int) -> str:
    return "".join(f"{v:04X}" for v in mv)


# --- golden frames from vectors.jsonl, values derived by hand from the bytes -----------------


def test_golden_2016_realtime_frame() -> None:
    # rtm_con data_2016: a real vehicle, HAUV4BGN6S5002219, 594 bytes, BCC 0x5C.
    rows = decode_rows(vector(25), RECEIVED)
    assert (rows.edition, rows.command, rows.response) == (2016, 0x02, 0xFE)
    assert rows.vin == "HAUV4BGN6S5002219"
    assert not rows.partial and not rows.encrypted and rows.tail_offset is None
    ts = datetime(2025, 10, 11, 19, 8, 18, tzinfo=CHINA_TZ)  # 19 0A 0B 13 08 12, GMT+8
    assert rows.ts_ms == int(ts.timestamp() * 1000) == 1_760_180_898_000
    v = rows.vehicle
    assert v is not None
    assert (v.vin, v.ts, v.received_at, v.edition, v.command) == (rows.vin, ts, RECEIVED, 2016, 2)
    # 01 | 01 03 01 007A 00000A1D 1E81 2743 55 01 1E 1999 00 10
    assert (v.vehicle_state, v.charging_state, v.run_mode) == (1, 3, 1)
    assert v.speed_kmh == 12.2  # 0x007A = 122 x 0.1
    assert v.odometer_km == 258.9  # 0x0A1D = 2589 x 0.1
    assert v.total_voltage_v == 780.9  # 0x1E81 = 7809 x 0.1
    assert v.total_current_a == 5.1  # 0x2743 = 10051 x 0.1 - 1000
    assert (v.soc_pct, v.dcdc_state, v.gear) == (85, 1, 0x1E)  # gear D + brake force
    assert v.insulation_kohm == 6553  # 0x1999; 2016 insulation has no sentinels
    assert (v.accel_pedal_pct, v.brake_pedal_pct) == (0, 16)
    # 05 | 00 00000000 00000000: status bit 0 clear = valid fix
    assert (v.position_valid, v.longitude, v.latitude) == (True, 0.0, 0.0)
    # 06 | 01 02 0FDF 01 14 0FDC 01 01 3A 01 0A 38
    assert (v.max_cell_voltage_v, v.max_cell_voltage_pack, v.max_cell_voltage_cell) == (4.063, 1, 2)
    assert (v.min_cell_voltage_v, v.min_cell_voltage_pack, v.min_cell_voltage_cell) == (4.06, 1, 20)
    assert (v.max_temp_c, v.max_temp_pack, v.max_temp_probe) == (18, 1, 1)  # 0x3A - 40
    assert (v.min_temp_c, v.min_temp_pack, v.min_temp_probe) == (16, 1, 10)  # 0x38 - 40
    assert v.extremes_derived is False
    # 07 | 00 00000000 00 00 00 00: no alarm, so no alarm row
    assert (v.max_alarm_level, v.general_flags, v.fault_count) == (0, 0, 0)
    assert rows.alarm is None
    # 02 | 02 motors: 01 01 38 5179 4E34 3D 1E4B 2724 and 02 02 37 5189 4CDB 40 1E4B 26F7
    m1, m2 = rows.motors
    assert tuple(m1)[2:] == (1, 1, 16, 857, 2.0, 21, 775.5, 2.0)
    assert tuple(m2)[2:] == (2, 2, 15, 873, -32.5, 24, 775.5, -2.5)
    assert m1.ts == ts and m1.vin == rows.vin
    # 08 | 01 | 01 1E81 2743 00C0 0001 C0 + 192 cells; 09 | 01 | 01 0030 + 48 probes
    (p,) = rows.packs
    assert (p.pack, p.voltage_v, p.current_a, p.cell_count, p.first_cell) == (1, 780.9, 5.1, 192, 1)
    assert len(p.cell_voltages_raw) == 384 and p.cell_voltages_raw[:4] == bytes.fromhex("0FDD0FDF")
    assert (p.cell_min_mv, p.cell_max_mv) == (4060, 4063)
    assert len(p.probe_temps_raw) == 48 and p.probe_temps_raw[:3] == bytes.fromhex("3A393A")
    assert (p.probe_min_c, p.probe_max_c) == (16, 18)
    assert cell_voltages_mv(p)[:2] == [4061, 4063] and probe_temps_c(p)[:2] == [18, 17]
    assert rows.session is None  # the 0x83 custom block (WORD length 0x001D) is skipped


def test_golden_2025_realtime_frame() -> None:
    # rtm_con data_2025: a real vehicle, 828 bytes, RSA-2048 signature at the end.
    rows = decode_rows(vector(138), RECEIVED)
    assert (rows.edition, rows.command, rows.vin) == (2025, 0x02, "HAUV4BGN6S5002219")
    assert not rows.partial  # the walk ends at the 0xFF marker whose Table 8 ends the unit
    ts = datetime(2025, 10, 28, 14, 45, 47, tzinfo=CHINA_TZ)  # 19 0A 1C 0E 2D 2F
    v = rows.vehicle
    assert v is not None and v.ts == ts and rows.ts_ms == int(ts.timestamp() * 1000)
    # 01 | 01 03 01 0000 00026106 1BE2 7546 4B 01 1F 1999 (18 bytes, no pedals)
    assert (v.vehicle_state, v.charging_state, v.run_mode, v.speed_kmh) == (1, 3, 1, 0.0)
    assert v.odometer_km == 15591.0  # 0x26106 = 155910 x 0.1
    assert v.total_voltage_v == 713.8
    assert v.total_current_a == 2.2  # 0x7546 = 30022 x 0.1 - 3000 (the 2025 offset)
    assert (v.soc_pct, v.dcdc_state, v.gear, v.insulation_kohm) == (75, 1, 0x1F, 6553)
    assert (v.accel_pedal_pct, v.brake_pedal_pct) == (None, None)
    # 05 | 01 02 00000000 00000000: status bit 0 set = invalid fix; GCJ-02
    assert (v.position_valid, v.longitude, v.latitude) == (False, 0.0, 0.0)
    # 06 | 00 00000000 00 00 00 03 00080002 00090025 00090026 00: other faults only
    assert (v.max_alarm_level, v.general_flags, v.fault_count) == (0, 0, 3)
    assert rows.alarm is None
    # 02 | 02: 01 03 47 7D00 00030D40 4A and 02 03 49 7D00 00030D3B 45
    m1, m2 = rows.motors
    assert tuple(m1)[2:] == (1, 3, 31, 0, 0.0, 34, None, None)
    assert tuple(m2)[2:] == (2, 3, 33, 0, -0.5, 29, None, None)  # 199995 x 0.1 - 20000
    # 07 | 01 | 01 1BE2 7546 00B4 + 180 cells; 08 | 01 | 01 0030 + 48 probes
    (p,) = rows.packs
    assert (p.pack, p.voltage_v, p.current_a, p.cell_count, p.first_cell) == (1, 713.8, 2.2, 180, 1)
    assert (p.cell_min_mv, p.cell_max_mv) == (3957, 3967)  # 0x0F75 .. 0x0F7F
    assert (p.probe_min_c, p.probe_max_c) == (27, 31)  # 0x43 - 40 .. 0x47 - 40
    # 2025 has no extremes block: derived from the packs, first position on ties
    assert v.extremes_derived is True
    assert (v.max_cell_voltage_v, v.max_cell_voltage_pack, v.max_cell_voltage_cell) == (
        3.967,
        1,
        64,
    )
    assert (v.min_cell_voltage_v, v.min_cell_voltage_pack, v.min_cell_voltage_cell) == (3.957, 1, 1)
    assert (v.max_temp_c, v.max_temp_pack, v.max_temp_probe) == (31, 1, 26)
    assert (v.min_temp_c, v.min_temp_pack, v.min_temp_probe) == (27, 1, 40)
    assert cell_voltages_mv(p)[63] == 3967 and probe_temps_c(p)[25] == 31


def test_login_and_logout_give_session_rows() -> None:
    login = decode_rows(vector(0))  # 2025: BMS count 1, 1 pack, one GB/T 34014 code
    assert login.session is not None
    assert tuple(login.session)[2:] == (
        "login",
        12,
        "89860924790023166606",
        ["0RJPEA00HAU0AAF131001955"],
    )
    assert login.session.ts == datetime(2025, 10, 27, 20, 2, 2, tzinfo=CHINA_TZ)
    assert login.vehicle is None and login.packs == []
    login16 = decode_rows(vector(1))  # 2016: 3 RESS codes of 24 bytes
    assert login16.session is not None and len(login16.session.pack_codes) == 3
    logout = decode_rows(vector(15))  # 2016 logout, serial 0x0802
    assert logout.session is not None
    assert tuple(logout.session)[2:] == ("logout", 0x0802, None, [])
    ack = decode_rows(vector(20))  # the platform's login ack: no session row
    assert ack.response == 0x01 and ack.session is None and ack.ts_ms is not None


def test_response_and_heartbeat_carry_the_envelope_only() -> None:
    ack = decode_rows(build(2016, 0x02, TIME_HEX, response=0x01))
    assert ack.response == 0x01 and ack.vehicle is None and ack.motors == []
    assert ack.ts_ms == int(datetime(2025, 10, 27, 20, 2, 2, tzinfo=CHINA_TZ).timestamp() * 1000)
    beat = decode_rows(build(2025, 0x07))
    assert (beat.command, beat.ts_ms, beat.vehicle, beat.session) == (0x07, None, None, None)


# --- sentinels ----------------------------------------------------------------------------


def test_sentinels_become_none() -> None:
    frame = build(
        2016,
        0x02,
        TIME_HEX,
        "01 FF FE FF FFFF FFFFFFFE FFFF FFFE FF FE FF FFFF FE FF",
        "02 01 01 FE FF FFFE FFFF FE FFFF FFFE",
        "05 FF FFFFFFFF FFFFFFFE",
        "06 FF FE FFFF FE FF FFFE FF FE FF FE FF FE",
        "07 FE 00000000 FF FE 00 00",
    )
    rows = decode_rows(frame)
    v = rows.vehicle
    assert v is not None
    values = tuple(v)[5:]
    names = v._fields[5:]
    kept = {"gear": 0xFF, "insulation_kohm": 0xFFFF, "position_valid": False}
    for name, value in zip(names, values, strict=True):
        if name in kept:
            assert value == kept[name], name
        elif name in ("extremes_derived", "fault_count", "general_flags", "signature_missing"):
            continue
        else:
            assert value is None, name
    # Alarm flags are a bit mask (no sentinel); a sentinel fault count is followed by no list.
    assert (v.general_flags, v.fault_count, v.extremes_derived) == (0, 0, False)
    (m,) = rows.motors
    assert m.seq == 1 and tuple(m)[3:] == (None,) * 7


def test_2025_insulation_and_unit_count_sentinels() -> None:
    frame = build(
        2025,
        0x02,
        TIME_HEX,
        "01 01 03 01 0000 00000000 1BE2 7546 4B 01 0E FFFE",
        "07 02 01 1BE2 7546 FFFF 02 1BE2 7546 0003" + cells(0xFFFE, 3300, 0xFFFF),
    )
    rows = decode_rows(frame)
    assert rows.vehicle is not None and rows.vehicle.insulation_kohm is None
    first, second = rows.packs
    assert (first.cell_count, first.cell_voltages_raw, first.cell_min_mv) == (None, b"", None)
    assert (second.cell_count, second.cell_min_mv, second.cell_max_mv) == (3, 3300, 3300)
    assert cell_voltages_mv(second) == [None, 3300, None]
    assert rows.vehicle.max_cell_voltage_cell == 2  # derived over the non-sentinel cells


# --- packs: joins and paging -------------------------------------------------


def test_second_page_of_a_paged_pack() -> None:
    # A 384-cell pack: this frame is the second page, cells 201..384 (Annex B.6 paging).
    frame = build(
        2016,
        0x02,
        TIME_HEX,
        "08 01 01 1B58 2710 0180 00C9 B8" + cells(*([3300] * 183 + [3310])),
        "09 01 01 0002 41 42",
    )
    (p,) = decode_rows(frame).packs
    assert (p.cell_count, p.first_cell, len(p.cell_voltages_raw)) == (384, 201, 368)
    assert (p.cell_min_mv, p.cell_max_mv, p.probe_min_c, p.probe_max_c) == (3300, 3310, 25, 26)


def test_packs_join_by_number_in_any_order() -> None:
    # Temperatures before voltages (real Dongfeng order), two packs, one with probes only.
    frame = build(
        2016,
        0x02,
        TIME_HEX,
        "09 03 02 0001 50 01 0002 46 47 03 0001 3C",
        "08 02 01 1B58 2710 0002 0001 02" + cells(3300, 3301),
        "02 1B58 2710 0001 0001 01" + cells(3400),
    )
    packs = decode_rows(frame).packs
    assert [(p.pack, p.cell_count, p.probe_temps_raw) for p in packs] == [
        (1, 2, bytes.fromhex("4647")),
        (2, 1, bytes.fromhex("50")),
        (3, None, bytes.fromhex("3C")),
    ]
    assert (packs[2].voltage_v, packs[2].cell_voltages_raw, packs[2].first_cell) == (None, b"", 1)


# --- alarms -------------------------------------------------------------------------------


def test_alarm_row_with_fault_codes_and_2025_bit_levels() -> None:
    frame = build(
        2025,
        0x02,
        TIME_HEX,
        "06 04 00800003 01 00000011 00 00 02 00000021 00000022 02 17 04 00 03",
    )
    rows = decode_rows(frame)
    a = rows.alarm
    assert a is not None
    assert (a.max_level, a.general_flags) == (4, 0x00800003)  # bit 23: thermal event
    assert (a.ress_faults, a.motor_faults, a.engine_faults) == ([0x11], [], [])
    assert a.other_faults == [0x21, 0x22]
    assert a.bit_levels == [23, 4, 0, 3]
    assert rows.vehicle is not None and rows.vehicle.fault_count == 3


def test_fault_codes_without_level_or_flags_give_no_alarm_row() -> None:
    rows = decode_rows(build(2016, 0x02, TIME_HEX, "07 00 00000000 01 00000005 00 00 00"))
    assert rows.alarm is None
    assert rows.vehicle is not None and rows.vehicle.fault_count == 1


# --- partial, encrypted ----------------------------------------------------------------------


def test_unknown_type_keeps_what_was_decoded() -> None:
    frame = build(
        2016,
        0x02,
        TIME_HEX,
        "05 00 06CB8080 01C4B2A0",  # 114.0 E, 29.668 N
        "7A 01 02 03",  # 0x0A-0x7F: no defined length in 2016
        "01 01 03 01 0000 00000000 1B58 2710 32 01 0E 1388 00 00",
    )
    rows = decode_rows(frame)
    assert rows.partial and rows.tail_offset == 24 + 6 + 10
    v = rows.vehicle
    assert v is not None and (v.longitude, v.latitude) == (114.0, 29.668)
    assert v.vehicle_state is None  # the 0x01 block after the tail is not guessed at


def test_custom_block_without_length_is_a_partial_frame() -> None:
    rows = decode_rows(vector(67))  # Shanghai 0x81 ten-second block: no WORD length
    assert rows.partial and rows.tail_offset == 30 and rows.vehicle is not None


def test_2025_unknown_type_before_the_signature() -> None:
    rows = decode_rows(vector(24))  # rtm_con "additional unknown data before signature"
    assert rows.partial and rows.tail_offset is not None
    assert len(rows.packs) == 1 and rows.vehicle is not None and rows.vehicle.soc_pct == 75


def test_a_count_overrun_stops_the_walk_and_drops_only_that_block() -> None:
    frame = build(
        2016,
        0x02,
        TIME_HEX,
        "08 01 01 1B58 2710 0002 0001 02" + cells(3300, 3301),
        # 9 probes announced, 3 present. (With 2, the 21 bytes after the 0x08 count would read
        # as one whole-vehicle block: a smaller pack count would explain the stop, and the frame
        # would be rejected as count_mismatch -- see test_decoder_counts.py.)
        "09 01 01 0009 41 42 43",
    )
    rows = decode_rows(frame)
    assert rows.partial and rows.tail_offset == 24 + 6 + 16
    (p,) = rows.packs
    assert (p.cell_max_mv, p.probe_temps_raw) == (3301, b"")


@pytest.mark.parametrize("encryption", [0x02, 0x03, 0x04, 0x05, 0xFE])
def test_encrypted_frames_give_the_envelope(encryption: int) -> None:
    rows = decode_rows(build(2025, 0x02, TIME_HEX, "01 02 03", encryption=encryption))
    assert rows.encrypted and rows.vin and rows.edition == 2025
    assert (rows.ts_ms, rows.vehicle, rows.partial) == (None, None, False)


# --- rejections ---------------------------------------------------------------------------

GOOD = build(2016, 0x02, TIME_HEX, "05 00 00000000 00000000")


def _with_bcc(frame: bytearray) -> bytes:
    frame[-1] = 0
    x = 0
    for b in frame[2:-1]:
        x ^= b
    frame[-1] = x
    return bytes(frame)


@pytest.mark.parametrize(
    ("frame", "reason", "offset"),
    [
        pytest.param(b"@@" + GOOD[2:], "bad_start", 0, id="bad_start"),
        pytest.param(GOOD[:20], "truncated", 20, id="truncated_header"),
        pytest.param(GOOD[:-3] + GOOD[-1:], "length_mismatch", 39, id="length_mismatch"),
        pytest.param(GOOD[:-1] + bytes((GOOD[-1] ^ 1,)), "bad_checksum", len(GOOD) - 1, id="bcc"),
        pytest.param(build(2016, 0x0B, TIME_HEX), "unknown_command", 2, id="unknown_command"),
        pytest.param(build(2016, 0x02, "19 0D 01 00 00 00"), "bad_field", 24, id="month_13"),
        pytest.param(build(2016, 0x02, "65 01 01 00 00 00"), "bad_field", 24, id="year_101"),
        pytest.param(build(2025, 0x02, "19 0A"), "truncated", 24, id="short_time"),
        pytest.param(_with_bcc(bytearray(GOOD[:3] + b"L" + GOOD[4:])), "bad_field", 3, id="hj1239"),
        pytest.param(
            build(2016, 0x02, TIME_HEX, vin="LSFD03205HC00118"), "bad_identity", 20, id="vin16"
        ),
        pytest.param(
            build(2016, 0x02, TIME_HEX, "02 02" + "01" * 12 + "05 00 00000000 00000000"),
            "count_mismatch",
            31,
            id="motor_count",
        ),
        pytest.param(
            build(2016, 0x02, TIME_HEX, "04 0000000000" * 65),
            "over_limit",
            24 + 6 + 6 * 64,
            id="blocks_per_frame",
        ),
    ],
)
def test_every_rejection_reason(frame: bytes, reason: str, offset: int) -> None:
    with pytest.raises(FrameError) as err:
        decode_rows(frame)
    assert (err.value.reason, err.value.offset) == (reason, offset)


def test_the_rejection_cases_cover_every_reason() -> None:
    ids = {"bad_start", "truncated", "length_mismatch", "bad_checksum", "unknown_command"}
    assert ids | {"bad_field", "bad_identity", "count_mismatch", "over_limit"} == FRAME_REASONS


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=400))
def test_nothing_but_frame_error_escapes_random_bytes(raw: bytes) -> None:
    for data in (raw, b"##" + raw, b"$$\x02\xfe" + raw):
        try:
            decode_rows(data)
        except FrameError as exc:
            assert exc.reason in REASONS


# --- API details --------------------------------------------------------------------------


def test_buffers_of_any_kind_and_every_slot_filled() -> None:
    raw = vector(25)
    for data in (raw, bytearray(raw), memoryview(raw), memoryview(b"xx" + raw)[2:]):
        rows = decode_rows(data)
        assert isinstance(rows, FrameRows) and rows.vehicle is not None
        for name in FrameRows.__slots__:
            getattr(rows, name)  # AttributeError if the fast constructor missed a slot
    assert repr(rows).startswith("FrameRows(edition=2016, command=0x02")


def test_frame_times_are_cached_and_right_past_the_cache_bound() -> None:
    a, b = decode_rows(vector(25)), decode_rows(vector(25))
    assert a.vehicle is not None and b.vehicle is not None
    assert a.vehicle.ts is b.vehicle.ts  # one datetime per distinct frame second
    # More distinct seconds than the native time cache holds (4096, cleared when full), in
    # one batch: every frame still gets its own time.
    start = datetime(2026, 1, 1, tzinfo=CHINA_TZ)
    times = [start + timedelta(seconds=i) for i in range(4096 + 10)]
    frames = [
        build(2016, 0x02, bytes((t.year - 2000, t.month, t.day, t.hour, t.minute, t.second)).hex())
        for t in times
    ]
    results = decode_rows_batch(frames, [0] * len(frames))
    for t, rows in zip(times, results, strict=True):
        assert isinstance(rows, FrameRows) and rows.vehicle is not None
        assert rows.ts_ms == int(t.timestamp() * 1000) and rows.vehicle.ts == t


def test_received_at_reaches_the_vehicle_row() -> None:
    rows = decode_rows(vector(82), RECEIVED)
    assert rows.vehicle is not None and rows.vehicle.received_at is RECEIVED
    assert decode_rows(vector(82)).vehicle.received_at is None  # type: ignore[union-attr]
