"""The header's unique ID (ingest/decoders/identity.py): a frame whose rows are keyed by it
must carry a 17-character VIN, any other frame a printable code; anything else is rejected as
``bad_identity`` at the first offending byte, by both decoders, so that no device is stored
under a garbled ID and no two devices share one (``''``, U+FFFD x 17)."""

from __future__ import annotations

import pytest

from devtools.sim.envelope import reseal
from devtools.sim.framebuilder import TIME_HEX, VIN, build
from ingest.decoders import FrameError, decode_frame, error_to_dict
from ingest.decoders.fast import decode_rows

pytestmark = pytest.mark.unit

REALTIME = build(2016, 0x02, TIME_HEX, "05 00 00000000 00000000")
REALTIME_2025 = build(2025, 0x02, TIME_HEX, "04 0BB8", "FF 02 0002 AABB 0000")


def with_id(frame: bytes, ident: bytes) -> bytes:
    """``frame`` with the 17 ID bytes replaced and the BCC recomputed."""
    assert len(ident) == 17
    raw = bytearray(frame)
    raw[4:21] = ident
    return reseal(raw)


def rejected(frame: bytes) -> tuple[str, int]:
    """(reason, offset) from both decoders, which must agree."""
    with pytest.raises(FrameError) as structured:
        decode_frame(frame)
    with pytest.raises(FrameError) as fast:
        decode_rows(frame)
    got = (structured.value.reason, structured.value.offset)
    assert (fast.value.reason, fast.value.offset) == got
    return got


@pytest.mark.parametrize(
    ("ident", "offset"),
    [
        pytest.param(b"LSFD0320\x005HC00118", 12, id="nul_inside"),
        pytest.param(b"\xff" * 17, 4, id="all_0xff"),
        pytest.param(b"\xfe" * 17, 4, id="all_0xfe"),
        pytest.param("LSFD03205HC0011é".encode(), 19, id="utf8"),
        pytest.param("粤B12345678901234".encode("gb18030"), 4, id="gb18030"),
        pytest.param(b"LSFD0320 HC001180", 12, id="space_inside"),
        pytest.param(b" LSFD03205HC00118", 4, id="leading_space"),
        pytest.param(b"LSFD03205HC00118\x00", 20, id="16_chars_nul_padded"),
        pytest.param(b"LSFD03205HC00118 ", 20, id="16_chars_space_padded"),
        pytest.param(b"123456789" + b"\x00" * 8, 13, id="jtne_placeholder"),
        pytest.param(b"\x00" * 17, 4, id="all_nul"),
        pytest.param(b"lsfd03205hc001180", 4, id="lower_case"),
        pytest.param(b"LSFD-3205HC001180", 8, id="punctuation"),
    ],
)
def test_realtime_frames_need_a_vin(ident: bytes, offset: int) -> None:
    assert rejected(with_id(REALTIME, ident)) == ("bad_identity", offset)
    assert rejected(with_id(REALTIME_2025, ident)) == ("bad_identity", offset)


@pytest.mark.parametrize("command", [0x01, 0x03, 0x04])
def test_login_reissue_and_logout_need_a_vin(command: int) -> None:
    units = {0x01: "0001" + "00" * 20 + "00 00", 0x03: "", 0x04: "0001"}
    frame = build(2016, command, TIME_HEX, units[command], vin="LSFD03205HC00118")
    assert rejected(frame) == ("bad_identity", 20)


def test_garbled_ids_no_longer_share_one_identity() -> None:
    # Before: both decoded to 17 x U+FFFD, one "device" for every broken terminal.
    reasons = {rejected(with_id(REALTIME, bytes([b]) * 17))[0] for b in (0x80, 0xA1, 0xFE, 0xFF)}
    assert reasons == {"bad_identity"}


def test_a_vin_with_i_o_q_is_accepted() -> None:
    # A real terminal capture (36node reissue fixture) sends ACTIACS2018101001: GB 16735 has
    # no I/O/Q, but refusing them would lose that device and cannot merge two devices.
    frame = with_id(REALTIME, b"ACTIACS2018101001")
    assert decode_frame(frame).vin == decode_rows(frame).vin == "ACTIACS2018101001"
    assert decode_rows(with_id(REALTIME, b"LQ0OI000000000001")).vin == "LQ0OI000000000001"


@pytest.mark.parametrize(
    ("frame", "vin"),
    [
        pytest.param(build(2016, 0x07, vin=""), "", id="heartbeat_all_nul"),
        pytest.param(build(2016, 0x08, vin="123456789"), "123456789", id="time_sync_short"),
        pytest.param(
            build(2016, 0x05, TIME_HEX, "0001" + "00" * 32 + "01", vin="platform-01"),
            "platform-01",
            id="platform_login_code",
        ),
        pytest.param(
            build(2016, 0x06, TIME_HEX, "0001", vin="PLATFORM 01".replace(" ", "_")),
            "PLATFORM_01",
            id="platform_logout_code",
        ),
        pytest.param(
            build(2016, 0x02, TIME_HEX, response=0x01, vin="123456789"),
            "123456789",
            id="realtime_ack",
        ),
    ],
)
def test_other_frames_may_carry_a_custom_code(frame: bytes, vin: str) -> None:
    assert decode_frame(frame).vin == decode_rows(frame).vin == vin


def test_space_padding_of_a_custom_code_is_stripped() -> None:
    frame = with_id(build(2016, 0x07), b"GW-01   \x00\x00\x00\x00\x00\x00\x00\x00\x00")
    assert decode_rows(frame).vin == "GW-01"


@pytest.mark.parametrize(
    ("ident", "offset"),
    [
        pytest.param(b"GW\x0001" + b"\x00" * 12, 6, id="nul_inside"),
        pytest.param(b"GW 01" + b"\x00" * 12, 6, id="space_inside"),
        pytest.param(b"\xff" * 17, 4, id="all_0xff"),
        pytest.param("威海".encode("gb18030") + b"\x00" * 13, 4, id="gb18030"),
        pytest.param(b"GW\t01" + b"\x00" * 12, 6, id="control"),
    ],
)
def test_custom_codes_are_printable_ascii(ident: bytes, offset: int) -> None:
    assert rejected(with_id(build(2016, 0x07), ident)) == ("bad_identity", offset)


def test_the_error_says_which_byte_and_what_is_allowed() -> None:
    with pytest.raises(FrameError) as err:
        decode_frame(with_id(REALTIME, b"LSFD0320\x005HC00118"))
    detail = error_to_dict(err.value)["error"]
    assert detail["reason"] == "bad_identity" and detail["offset"] == 12
    assert "0x00 at position 9" in detail["detail"] and "GB 16735" in detail["detail"]


def test_a_bad_checksum_is_reported_before_the_identity() -> None:
    frame = bytearray(with_id(REALTIME, b"\xff" * 17))
    frame[-1] ^= 1
    assert rejected(bytes(frame))[0] == "bad_checksum"


def test_the_vin_cache_never_holds_a_rejected_id() -> None:
    bad = with_id(REALTIME, b"LSFD03205HC00118\x00")
    for _ in range(2):  # the second time would hit a cache entry, if one had been made
        assert rejected(bad) == ("bad_identity", 20)
    assert decode_rows(REALTIME).vin == VIN
