"""Golden frames of the battery-pack profile, written byte by byte from the tables of
docs/protocols/battery.md (not produced by the encoder): each decodes to the documented
values in both decoders, encodes back to the same bytes, and each broken rule is rejected
with its documented reason and offset."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from contract.battery import PackFrameRows
from contract.clock import CHINA_TZ
from contract.rows import PackRow, cell_voltages_mv, probe_temps_c
from ingest.decoders import FrameError, battery
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackLogin,
    PackLogout,
    PackProbes,
    PackState,
    Site,
    pack_frame_to_dict,
)
from ingest.decoders.battery.frame import PackFrame
from ingest.decoders.blocks.custom import CustomBlock
from ingest.decoders.checksum import bcc

pytestmark = pytest.mark.unit

CODE = "CATPEA1TRACE01E3F0000042"
ID_HEX = "5452414345303145334630303030303432"  # "TRACE01E3F0000042": positions 8-24
CODE_HEX = "434154504541315452414345303145334630303030303432"
ORIG_HEX = "425944504231304c494e4530303141314130303031323334"  # BYDPB10LINE001A1A0001234
ICCID_HEX = "3839383630303030303030303030303030303031"  # 89860000000000000001


def _hex(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts).replace(" ", ""))


# 2016 envelope, real-time: every information type once.
REALTIME_2016 = _hex(
    "2323 02 fe",
    ID_HEX,
    "01 005b",  # start, command, response, ID, no encryption, N = 91
    "19 01 02 03 04 05",  # 2025-01-02 03:04:05 +08:00
    CODE_HEX,
    "01 02 03 50 5f 0078 0db1 74b5 1388",  # state: swap station, idle, 80 %, 95 %, 120 cycles,
    #                                        350.5 V, (29877 - 30000) / 10 = -12.3 A, 5000 kΩ
    "02 535741502d53482d30303031 0000000000000000 0007",  # site "SWAP-SH-0001", slot 7
    "03 0003 0ce5 0ce6 ffff",  # 3 cells: 3.301 V, 3.302 V, invalid
    "04 0002 41 42",  # 2 probes: 25 °C, 26 °C
    "05 01 00000002 01 00000007",  # level 1, flag bit 1 (high temperature), fault 7
    "10",  # BCC
)

# 2025 envelope, pack login of a second-life pack (re-coded; original code kept).
LOGIN_2025 = _hex(
    "2424 01 fe",
    ID_HEX,
    "01 0056",  # N = 86
    "19 05 06 07 08 09",
    "0003",
    ICCID_HEX,
    CODE_HEX,
    ORIG_HEX,
    "05dc 0258 0e10 0060 0020",  # 150.0 Ah, 60.0 kWh, 360.0 V, 96 cells, 32 probes
    "21",
)

LOGOUT_2016 = _hex("2323 04 fe", ID_HEX, "01 0020", "19 05 06 08 00 00", "0003", CODE_HEX, "f9")

# 2025 envelope, real-time with sentinels, a custom block and an unknown type at the end.
SENTINELS_2025 = _hex(
    "2424 02 fe",
    ID_HEX,
    "01 003a",
    "19 05 06 07 08 09",
    CODE_HEX,
    "01 04 01 fe ff 0000 ffff 7530 fffe",  # second-life, charging, SOC abnormal, SOH invalid,
    #                                        0 cycles, voltage invalid, 0.0 A, insulation abn.
    "03 ffff",  # cell count invalid: no list
    "80 0002 abcd",  # custom block, WORD length 2
    "04 0001 ff",  # one probe, invalid
    "30 0102",  # type 0x30 is not in the profile: the walk stops here (frame offset 79)
    "87",
)


def test_realtime_2016_decodes_to_the_documented_values() -> None:
    f = battery.decode_pack_frame(REALTIME_2016)
    assert (f.edition, f.command, f.ident, f.pack_code) == (2016, 2, CODE[7:], CODE)
    assert f.time == datetime(2025, 1, 2, 3, 4, 5, tzinfo=CHINA_TZ)
    assert f.blocks == (
        PackState(2, 3, 80, 95, 120, 350.5, -12.3, 5000),
        Site("SWAP-SH-0001", 7),
        PackCells((3.301, 3.302, None)),
        PackProbes((25, 26)),
        PackAlarm(1, 2, (7,)),
    )
    assert not f.partial
    assert battery.encode_pack_frame(f) == REALTIME_2016
    rows = battery.decode_pack_rows(REALTIME_2016)
    t = rows.telemetry
    assert t is not None
    assert (t.pack_code, t.lifecycle_stage, t.work_state, t.soc_pct, t.soh_pct) == (
        CODE,
        2,
        3,
        80,
        95,
    )
    assert (t.cycle_count, t.voltage_v, t.current_a, t.insulation_kohm) == (120, 350.5, -12.3, 5000)
    assert (t.site_id, t.slot, t.cell_count, t.cell_min_mv, t.cell_max_mv) == (
        "SWAP-SH-0001",
        7,
        3,
        3301,
        3302,
    )
    assert (t.probe_count, t.probe_min_c, t.probe_max_c) == (2, 25, 26)
    assert (t.max_alarm_level, t.alarm_flags, t.fault_count) == (1, 2, 1)
    # the raw arrays use the vehicle rows' byte format, so their readers apply
    assert cell_voltages_mv(_as_pack_row(t.cell_voltages_raw, b"")) == [3301, 3302, None]
    assert probe_temps_c(_as_pack_row(b"", t.probe_temps_raw)) == [25, 26]
    assert rows.alarm is not None and rows.alarm.fault_codes == [7]
    assert pack_frame_to_dict(f)["blocks"][4]["alarms"] == ["battery_high_temperature"]


def _as_pack_row(cells: bytes, probes: bytes) -> PackRow:
    return PackRow(
        "X",
        datetime(2025, 1, 1, tzinfo=CHINA_TZ),
        1,
        None,
        None,
        None,
        1,
        cells,
        probes,
        *[None] * 4,
    )


def test_login_2025_of_a_second_life_pack() -> None:
    f = battery.decode_pack_frame(LOGIN_2025)
    assert f.edition == 2025 and f.command_name == "pack_login"
    assert f.body == PackLogin(
        3, "89860000000000000001", "BYDPB10LINE001A1A0001234", 150.0, 60.0, 360.0, 96, 32
    )
    assert battery.encode_pack_frame(f) == LOGIN_2025
    s = battery.decode_pack_rows(LOGIN_2025).session
    assert s is not None
    assert (s.pack_code, s.event, s.seq, s.original_code, s.cell_count) == (
        CODE,
        "login",
        3,
        "BYDPB10LINE001A1A0001234",
        96,
    )
    pack = pack_frame_to_dict(f)["pack"]
    assert pack["production_date"] == date(2024, 3, 15).isoformat()
    assert pack["battery_type_name"] == "ternary"


def test_logout_2016() -> None:
    f = battery.decode_pack_frame(LOGOUT_2016)
    assert f.body == PackLogout(3) and f.pack_code == CODE
    assert battery.encode_pack_frame(f) == LOGOUT_2016
    s = battery.decode_pack_rows(LOGOUT_2016).session
    assert s is not None and (s.event, s.seq, s.iccid) == ("logout", 3, None)


def test_sentinels_custom_block_and_partial_walk_agree_in_both_decoders() -> None:
    f = battery.decode_pack_frame(SENTINELS_2025)
    state = f.blocks[0]
    assert state == PackState(
        4,
        1,
        None,
        None,
        0,
        None,
        0.0,
        None,
        (("soc_pct", "abnormal"), ("insulation_kohm", "abnormal")),
    )
    assert f.blocks[1] == PackCells(None)
    assert f.blocks[2] == CustomBlock(0x80, b"\xab\xcd")
    assert f.blocks[3] == PackProbes((None,))
    assert f.partial and f.tail_reason == "unknown_type" and f.tail_offset == 79
    assert battery.encode_pack_frame(f) == SENTINELS_2025
    rows: PackFrameRows = battery.decode_pack_rows(SENTINELS_2025)
    t = rows.telemetry
    assert t is not None
    assert rows.partial and rows.tail_offset == 79
    assert (t.lifecycle_stage, t.soc_pct, t.soh_pct, t.voltage_v, t.current_a) == (
        4,
        None,
        None,
        None,
        0.0,
    )
    assert (t.cell_count, t.cell_voltages_raw, t.cell_min_mv) == (None, b"", None)
    assert (t.probe_count, t.probe_temps_raw, t.probe_min_c, t.probe_max_c) == (
        1,
        b"\xff",
        None,
        None,
    )
    assert rows.alarm is None and t.fault_count == 0


def _reseal(frame: bytes) -> bytes:
    return frame[:-1] + bytes((bcc(frame, 2, len(frame) - 1),))


def _patch(frame: bytes, at: int, new: bytes) -> bytes:
    return _reseal(frame[:at] + new + frame[at + len(new) :])


@pytest.mark.parametrize(
    ("frame", "reason", "offset"),
    [
        (b"@@" + REALTIME_2016[2:], "bad_start", 0),
        (REALTIME_2016[:-1] + b"\x11", "bad_checksum", 115),
        (REALTIME_2016[:50], "length_mismatch", 50),
        # header ID of another pack (serial 0000043): the frame names two packs
        (_patch(REALTIME_2016, 20, b"3"), "bad_identity", 4),
        # lower-case letter in the ID
        (_patch(REALTIME_2016, 4, b"t"), "bad_identity", 4),
        # pack code with a bad battery type (position 5 -> frame offset 30 + 4)
        (_patch(REALTIME_2016, 34, b"H"), "bad_identity", 34),
        # pack code dated 30 February 2024 (day code X at position 17 -> offset 46)
        (_patch(_patch(REALTIME_2016, 45, b"2"), 46, b"X"), "bad_identity", 46),
        # command 0x05 is not in the pack profile
        (_patch(REALTIME_2016, 2, b"\x05"), "unknown_command", 2),
        # month 13 in the frame time
        (_patch(REALTIME_2016, 25, b"\x0d"), "bad_field", 24),
        # a second-life login whose original code repeats its own code
        (_patch(LOGIN_2025, 76, CODE.encode()), "bad_field", 76),
    ],
)
def test_rejections(frame: bytes, reason: str, offset: int) -> None:
    for decode in (battery.decode_pack_frame, battery.decode_pack_rows):
        with pytest.raises(FrameError) as info:
            decode(frame)
        assert (info.value.reason, info.value.offset) == (reason, offset)


def test_login_with_trailing_bytes_is_rejected() -> None:
    extra = LOGIN_2025[:22] + b"\x00\x57" + LOGIN_2025[24:-1] + b"\x00"
    with pytest.raises(FrameError) as info:
        battery.decode_pack_frame(_reseal(extra + b"\x00"))
    assert info.value.reason == "bad_field" and info.value.offset == 110


def test_responses_and_heartbeats_need_no_pack_code() -> None:
    ack = PackFrame(
        2016, 0x01, response=0x01, ident=CODE[7:], time=datetime(2025, 1, 2, tzinfo=CHINA_TZ)
    )
    raw = battery.encode_pack_frame(ack)
    assert battery.decode_pack_frame(raw) == ack
    rows = battery.decode_pack_rows(raw)
    assert rows.session is None and rows.telemetry is None and rows.response == 1
    beat = battery.encode_pack_frame(PackFrame(2025, 0x07, ident="STATION-SH-01"))
    assert battery.decode_pack_frame(beat).ident == "STATION-SH-01"
