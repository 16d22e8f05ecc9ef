"""Golden cases per command of both editions, the walk's stop rules, and every rejection
reason with its offset."""

from __future__ import annotations

import pytest

from devtools.sim.framebuilder import TIME_HEX, TIME_ISO, VIN, build, decode_json, reject
from ingest.decoders import decode_frame, encode_frame, make_response

pytestmark = pytest.mark.unit

ICCID_HEX = "3839383630363136303230303436333739363239"  # "89860616020046379629"


def test_login_2016() -> None:
    d = decode_json(
        build(2016, 0x01, TIME_HEX, "001F", ICCID_HEX, "02 05", "3130303031 3130303032")
    )
    assert (d["command_name"], d["time"], d["ts_ms"]) == ("vehicle_login", TIME_ISO, 1761566522000)
    assert d["login"] == {
        "login_seq": 31,
        "iccid": "89860616020046379629",
        "pack_codes": ["10001", "10002"],
        "ress_count": 2,
        "code_length": 5,
        "bms_pack_counts": None,
    }


def test_login_2016_without_codes_and_nul_padded_iccid() -> None:
    iccid = "3634373433303636343035" + "00" * 9  # "64743066405" + NULs
    d = decode_json(build(2016, 0x01, TIME_HEX, "0001", iccid, "01 00"))
    assert (d["login"]["iccid"], d["login"]["pack_codes"]) == ("64743066405", [])


def test_login_2025_pack_codes_per_bms() -> None:
    code = "30524A50454130304841553041414631333130303139353" + "5"  # 0RJPEA00HAU0AAF131001955
    d = decode_json(build(2025, 0x01, TIME_HEX, "000C", ICCID_HEX, "02 01 02", code * 3))
    assert d["login"]["bms_pack_counts"] == [1, 2]
    assert d["login"]["pack_codes"] == ["0RJPEA00HAU0AAF131001955"] * 3


def test_login_overrunning_codes_is_a_bad_field() -> None:
    err = reject(build(2016, 0x01, TIME_HEX, "0001", ICCID_HEX, "03 18", "41" * 24))
    assert (err.reason, err.offset) == ("bad_field", 54)


def test_vehicle_and_platform_logout() -> None:
    assert decode_json(build(2016, 0x04, TIME_HEX, "0046"))["logout"] == {"logout_seq": 70}
    d = decode_json(build(2025, 0x06, TIME_HEX, "0802"))
    assert (d["command_name"], d["platform_logout"]) == ("platform_logout", {"logout_seq": 2050})


def test_platform_login_with_gb18030_user_name() -> None:
    user = "cdfebaa3b9e3cca9bfd5b8db"  # 威海广泰空港 in GB 18030 (12 bytes)
    password = "70617373776f7264" + "00" * 12
    d = decode_json(build(2016, 0x05, TIME_HEX, "0001", user, password, "03", vin="PLATFORM01"))
    assert d["vin"] == "PLATFORM01"
    assert d["platform_login"] == {
        "login_seq": 1,
        "username": "威海广泰空港",
        "password": "password",
        "encryption_rule": 3,
    }


@pytest.mark.parametrize("command", [0x07, 0x08])
def test_heartbeat_and_time_sync(command: int) -> None:
    d = decode_json(build(2016, command, vin=""))
    assert (d["vin"], d["time"], d["tail_hex"]) == ("", None, None)
    reply = decode_json(build(2016, command, TIME_HEX, response=0x01))
    assert (reply["response_name"], reply["time"]) == ("success", TIME_ISO)


def test_responses_time_only_and_echo() -> None:
    ack = decode_json(build(2016, 0x02, TIME_HEX, response=0x01))
    assert (ack["blocks"], ack["partial"]) == ([], False)
    # EMQX-style login ack: the whole login body echoed.
    echo = decode_json(build(2016, 0x01, TIME_HEX, "0001", ICCID_HEX, "01 00", response=0x01))
    assert echo["login"]["login_seq"] == 1
    # A response whose body fits no layout is kept, not rejected.
    odd = decode_json(build(2016, 0x04, TIME_HEX, "01", response=0x02))
    assert (odd["time"], odd["partial"], odd["tail_hex"]) == (TIME_ISO, True, "01")


def test_query_command_and_edition_dependent_reply_widths() -> None:
    q = decode_json(build(2016, 0x80, TIME_HEX, "03 01 02 05"))
    assert q["query"] == {"param_ids": [1, 2, 5]}
    # 2016: 0x02 is a WORD; 2025: a BYTE.
    r16 = decode_json(build(2016, 0x80, TIME_HEX, "02 01 1770 02 000A", response=0x01))
    r25 = decode_json(build(2025, 0x80, TIME_HEX, "02 01 1770 02 0A", response=0x01))
    for d in (r16, r25):
        assert [(p["name"], p["value"]) for p in d["query"]["params"]] == [
            ("local_storage_period_ms", 6000),
            ("report_period_s", 10),
        ]


def test_set_with_domain_and_unknown_param_stops() -> None:
    d = decode_json(
        build(2016, 0x81, TIME_HEX, "04", "04 07", "05 6E65762E636F6D", "06 1CA5", "80 01 02")
    )
    params = d["set"]["params"]
    assert [(p["id"], p["value"]) for p in params] == [(4, 7), (5, "nev.com"), (6, 7333)]
    # 0x80 is user-defined: no defined length, so decoding stops and keeps the rest.
    assert (d["partial"], d["tail_reason"], d["tail_hex"]) == (True, "unknown_param", "800102")


def test_control_upgrade_and_alarm() -> None:
    upgrade = (
        b"cmnet;user;pw;"
        + bytes([0, 0, 192, 168, 1, 2])
        + b";"
        + (21).to_bytes(2, "big")
        + b";ABCD;HW001;FW002;ftp://x/fw.bin;"
        + (60).to_bytes(2, "big")
    )
    d = decode_json(build(2016, 0x82, TIME_HEX, "01", upgrade.hex()))
    u = d["control"]["upgrade"]
    assert (d["control"]["command_name"], u["apn"], u["user"], u["password"]) == (
        "upgrade",
        "cmnet",
        "user",
        "pw",
    )
    assert (u["address_hex"], u["port"], u["manufacturer_id"]) == ("0000c0a80102", 21, "ABCD")
    assert (u["hardware_version"], u["firmware_version"], u["url"]) == (
        "HW001",
        "FW002",
        "ftp://x/fw.bin",
    )
    assert u["timeout_min"] == 60
    a = decode_json(build(2025, 0x82, TIME_HEX, "06 04", b"fire".hex()))
    assert a["control"]["alarm"] == {"level": 4, "info": "fire"}


def test_activation_response_and_key_exchange_2025() -> None:
    d = decode_json(build(2025, 0x0A, "02 01"))
    assert (d["time"], d["activation_response"]) == (None, {"status": 2, "info": 1})
    k = decode_json(build(2025, 0x0B, "05 0002 A1B2", TIME_HEX, "1A0A1B140202"))
    assert k["key_exchange"] == {
        "key_type": 5,
        "key_hex": "a1b2",
        "valid_from": TIME_ISO,
        "valid_until": "2026-10-27T20:02:02+08:00",
    }


def test_activation_2025_signature_covers_time_to_vin() -> None:
    chip = b"CHIP0001".ljust(16).hex()
    frame = build(
        2025, 0x09, TIME_HEX, chip, "0003 010001", VIN.encode().hex(), "01 0001 AA 0001 BB"
    )
    d = decode_json(frame)
    assert d["activation"] == {"chip_id": "CHIP0001", "public_key_hex": "010001", "vin": VIN}
    sig = d["signature"]
    assert (sig["algorithm_name"], sig["r_hex"], sig["s_hex"]) == ("SM2", "aa", "bb")
    assert frame[sig["signed_end"] - 17 : sig["signed_end"]] == VIN.encode()


def test_commands_of_the_other_edition_are_unknown() -> None:
    err = reject(build(2016, 0x09, TIME_HEX))  # activation exists only in 2025
    assert (err.reason, err.offset) == ("unknown_command", 2)
    assert reject(build(2025, 0x83, TIME_HEX)).reason == "unknown_command"


def test_custom_command_and_encrypted_payload_stay_opaque() -> None:
    c = decode_json(build(2016, 0xC1, "0102"))
    assert (c["command_name"], c["tail_hex"], c["tail_reason"], c["partial"]) == (
        "custom",
        "0102",
        "custom_command",
        False,
    )
    e = decode_json(build(2016, 0x02, "DEADBEEF", encryption=0x03))
    assert (e["encrypted"], e["tail_hex"], e["tail_reason"], e["blocks"]) == (
        True,
        "deadbeef",
        "encrypted",
        [],
    )


def test_make_response_keeps_the_time_and_drops_the_rest() -> None:
    request = decode_frame(build(2016, 0x01, TIME_HEX, "0001", ICCID_HEX, "01 00"))
    ack = encode_frame(make_response(request))
    assert ack == build(2016, 0x01, TIME_HEX, response=0x01)


# --- the walk's stop rules -------------------------------------------------------------------


def test_unknown_type_stops_the_walk_and_keeps_the_tail() -> None:
    d = decode_json(build(2016, 0x02, TIME_HEX, "04 01 0BB8 01F4", "0A 1234"))
    assert [b["name"] for b in d["blocks"]] == ["engine"]
    assert (d["partial"], d["tail_reason"], d["tail_hex"], d["tail_offset"]) == (
        True,
        "unknown_type",
        "0a1234",
        36,
    )


def test_custom_length_overrun_is_not_guessed() -> None:
    # A Shanghai 0x81 block without the WORD length: "0100" would claim 256 bytes.
    d = decode_json(build(2016, 0x03, TIME_HEX, "81 0100 0200 0300 00"))
    assert (d["blocks"], d["tail_reason"], d["tail_hex"]) == (
        [],
        "custom_overrun",
        "8101000200030000",
    )


def test_block_whose_count_overruns_keeps_the_blocks_before() -> None:
    d = decode_json(build(2016, 0x02, TIME_HEX, "04 01 0BB8 01F4", "02 05 01 01"))
    assert [b["name"] for b in d["blocks"]] == ["engine"]
    assert (d["tail_reason"], d["tail_hex"]) == ("bad_field", "02050101")


def test_2025_unknown_type_still_finds_the_signature() -> None:
    # A sentinel 0xFF inside the tail does not fool the backwards search.
    d = decode_json(build(2025, 0x02, TIME_HEX, "04 0BB8", "79 FF 02 00", "FF 02 0001 AB 0000"))
    assert (d["tail_reason"], d["tail_hex"]) == ("unknown_type", "79ff0200")
    assert (d["signature"]["algorithm"], d["signature"]["r_hex"]) == (2, "ab")


def test_blocks_repeat_and_come_in_any_order() -> None:
    d = decode_json(build(2016, 0x02, TIME_HEX, "09 01 01 0001 41", "04 01 0BB8 01F4", "09 00"))
    assert [b["name"] for b in d["blocks"]] == ["cell_temperatures", "engine", "cell_temperatures"]


# --- rejections --------------------------------------------------------------------------------


def test_rejection_reasons_and_offsets() -> None:
    good = build(2016, 0x02, TIME_HEX)
    assert (reject(b"AB" + good[2:]).reason, reject(b"AB" + good[2:]).offset) == ("bad_start", 0)
    assert reject(b"#$" + good[2:]).offset == 1
    assert (reject(good[:20]).reason, reject(good[:20]).offset) == ("truncated", 20)
    short = reject(good[:-1])
    assert (short.reason, short.offset) == ("length_mismatch", len(good) - 1)
    long = reject(good + b"\x00")
    assert (long.reason, long.offset) == ("length_mismatch", len(good))
    huge = bytearray(good)
    huge[22:24] = b"\xff\xfc"  # 65532 > 65531
    assert (reject(bytes(huge)).reason, reject(bytes(huge)).offset) == ("length_mismatch", 22)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    assert (reject(bytes(bad)).reason, reject(bytes(bad)).offset) == ("bad_checksum", len(good) - 1)


def test_bad_time_is_a_bad_field() -> None:
    err = reject(build(2016, 0x02, "19 0D 01 00 00 00"))  # month 13
    assert (err.reason, err.offset) == ("bad_field", 24)


def test_realtime_without_time_is_truncated() -> None:
    err = reject(build(2016, 0x02, "1901"))
    assert (err.reason, err.offset) == ("truncated", 24)


def test_hj1239_frames_are_refused_with_a_pointer() -> None:
    # GB 17691 / HJ 1239: no response flag, so a VIN character sits at byte 3.
    frame = bytearray(build(2016, 0x02, TIME_HEX, vin="LFV2A21K5J3000001"))
    frame[3] = ord("L")
    frame[-1] ^= 0xFE ^ ord("L")
    err = reject(bytes(frame))
    assert (err.reason, err.offset) == ("bad_field", 3)
    assert "HJ 1239" in err.detail
