"""The gateway's pure parts: answers byte for byte (both editions), the session state machine
(login first, platform sessions, identity binding, refusals and their error answers), the
kinds' identity rules and record keys, and the accounts file (scrypt, rotation, reload)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools.sim.envelope import frame
from ingest.decoders.commands.session import PlatformLogin, encode_platform_login
from ingest.errors import UserError
from ingest.gateway.accounts import Accounts, hash_password, set_password, verify_password
from ingest.gateway.answers import answer
from ingest.gateway.limits import Budget, LogGate, TokenBucket
from ingest.gateway.session import ANSWER, PRODUCE, REFUSE, VERIFY, Session, command_name

pytestmark = pytest.mark.unit

VIN = "LNEVTEST000000001"
T = bytes((26, 12, 6, 15, 30, 45))  # 2026-12-06 15:30:45 Beijing
NOW = datetime(2026, 12, 6, 7, 31, 0, tzinfo=UTC)  # 15:31:00 Beijing
LOGIN_BODY = T + b"\x00\x01" + b"89860000000000000001" + b"\x01\x00"


def login(edition: int = 2016, vin: str = VIN) -> bytes:
    body = LOGIN_BODY if edition == 2016 else T + b"\x00\x01" + b"8" * 20 + b"\x00"
    return frame(edition, 0x01, vin, body)


def platform_login(user: str, password: str, edition: int = 2016) -> bytes:
    body = T + encode_platform_login(PlatformLogin(1, user, password, 0x01))
    return frame(edition, 0x05, "PLATFORM01", body)


@pytest.mark.parametrize("edition", [2016, 2025])
def test_answers_keep_the_time_and_delete_the_rest(edition: int) -> None:
    # 6.3.2: response flag changed, the request's time kept, rest deleted, BCC recomputed.
    assert answer(login(edition), 0x01, NOW) == frame(edition, 0x01, VIN, T, response=0x01)
    logout = frame(edition, 0x04, VIN, T + b"\x00\x01")
    assert answer(logout, 0x01, NOW) == frame(edition, 0x04, VIN, T, response=0x01)
    realtime = frame(edition, 0x02, VIN, T + b"\x01" + bytes(20))
    assert answer(realtime, 0x02, NOW) == frame(edition, 0x02, VIN, T, response=0x02)


@pytest.mark.parametrize("edition", [2016, 2025])
def test_heartbeat_and_time_calibration_answers(edition: int) -> None:
    heartbeat = frame(edition, 0x07, VIN, b"")
    assert answer(heartbeat, 0x01, NOW) == frame(edition, 0x07, VIN, b"", response=0x01)
    calibration = frame(edition, 0x08, VIN, b"")
    now_beijing = bytes((26, 12, 6, 15, 31, 0))  # the platform's clock, Beijing wall time
    assert answer(calibration, 0x01, NOW) == frame(edition, 0x08, VIN, now_beijing, response=1)


def test_vehicle_session_logs_in_first() -> None:
    s = Session("vehicle")
    rt = frame(2016, 0x02, VIN, T + b"\x01" + bytes(20))
    refused = s.on_frame(rt)
    assert (refused.action, refused.reason, refused.flag) == (REFUSE, "not_logged_in", 0x02)
    hb = s.on_frame(frame(2016, 0x07, "", b""))
    assert (hb.action, hb.reason, hb.flag) == (REFUSE, "not_logged_in", 0x02)
    d = s.on_frame(login())
    assert (d.action, d.flag, d.key) == (PRODUCE, 0x01, VIN.encode())
    d = s.on_frame(rt)
    assert (d.action, d.flag, d.key) == (PRODUCE, None, VIN.encode())  # B.2.1: no success ack
    d = s.on_frame(frame(2016, 0x07, "", b""))  # a heartbeat once logged in: produced, answered
    assert (d.action, d.flag, d.key) == (PRODUCE, 0x01, None)  # empty ID: no key
    other = frame(2016, 0x02, "LNEVTEST000000002", T + b"\x01" + bytes(20))
    assert s.on_frame(other).reason == "identity_mismatch"
    d = s.on_frame(frame(2016, 0x04, VIN, T + b"\x00\x01"))
    assert (d.action, d.flag) == (PRODUCE, 0x01)
    assert s.on_frame(rt).reason == "not_logged_in"  # logged out


def test_battery_connections_are_not_bound_to_one_pack() -> None:
    s = Session("battery")
    a, b = "A1TRACE01E3F0000042", "A1TRACE01E3F0000043"
    s.on_frame(frame(2025, 0x01, a[2:], T + bytes(70)))
    assert s.logged_in and s.vin == ""
    d = s.on_frame(frame(2025, 0x02, b[2:], T + bytes(30)))
    assert d.action == PRODUCE  # a swap station sends for many packs on one connection


def test_answer_realtime_option_and_responses() -> None:
    s = Session("vehicle", answer_realtime=True)
    s.on_frame(login())
    assert s.on_frame(frame(2025, 0x03, VIN, T + b"\x01" + bytes(20))).flag == 0x01
    reply = s.on_frame(frame(2016, 0x80, VIN, T + b"\x00", response=0x01))
    assert (reply.action, reply.flag, reply.command) == (PRODUCE, None, "query_response")


def test_platform_session_forwards_many_vehicles() -> None:
    s = Session("vehicle")
    d = s.on_frame(platform_login("oem1", "secret"))
    assert (d.action, d.user, d.password) == (VERIFY, "oem1", "secret")
    assert not s.logged_in
    assert s.platform_login_done("oem1", ok=True) == 0x01
    for i in range(3):
        vin = f"LNEVTEST00000000{i}"
        assert s.on_frame(login(vin=vin)).flag == 0x01
        assert s.on_frame(frame(2016, 0x02, vin, T + b"\x01" + bytes(20))).key == vin.encode()
    assert s.platform == "oem1" and s.logged_in  # a forwarded vehicle login changes nothing
    d = s.on_frame(frame(2016, 0x06, "PLATFORM01", T + b"\x00\x01"))
    assert (d.action, d.flag) == (ANSWER, 0x01)
    assert not s.logged_in and s.platform == ""


def test_failed_platform_logins_count() -> None:
    s = Session("vehicle")
    s.on_frame(platform_login("oem1", "wrong"))
    assert s.platform_login_done("oem1", ok=False) == 0x02
    assert s.login_failures == 1 and not s.logged_in
    assert Session("charger").on_frame(platform_login("a", "b")).reason == "unexpected_command"


def test_bad_identity_and_size_are_refused_with_error_answers() -> None:
    s = Session("vehicle", max_frame_bytes=100)
    d = s.on_frame(login(vin="lnevtest000000001"))
    assert (d.action, d.reason, d.flag) == (REFUSE, "bad_identity", 0x02)
    big = frame(2016, 0x01, VIN, LOGIN_BODY + bytes(60))
    assert s.on_frame(big).reason == "frame_too_large"
    zeros = b"$$" + bytes(23)  # a false start in zero padding passes the BCC
    assert s.on_frame(zeros).reason == "unknown_command"
    charger = Session("charger")
    assert charger.on_frame(frame(2025, 0x07, "", b"")).reason == "bad_start"


def test_checked_identities_are_remembered_without_loosening_the_rule() -> None:
    """The session remembers VINs that passed the VIN rule (a ~3 µs byte loop per frame):
    an ID first seen on a frame with the looser custom-code rule (a heartbeat) is still
    checked as a VIN on a data frame, and a remembered VIN answers for any command."""
    code = "lnevcache00000001"  # printable: a good custom code, not a VIN
    p = Session("vehicle")
    p.on_frame(platform_login("oem1", "secret"))
    p.platform_login_done("oem1", ok=True)
    assert p.on_frame(frame(2016, 0x07, code, b"")).action == PRODUCE  # custom-code rule
    d = p.on_frame(frame(2016, 0x02, code, T + b"\x01" + bytes(20)))
    assert (d.action, d.reason) == (REFUSE, "bad_identity")
    vin = "LNEVCACHE00000002"
    for _ in range(2):  # first checked, then remembered: the same decision both times
        assert p.on_frame(frame(2016, 0x02, vin, T + b"\x01" + bytes(20))).key == vin.encode()
        assert p.on_frame(frame(2016, 0x07, vin, b"")).key == vin.encode()


def test_command_names_are_bounded() -> None:
    assert command_name(0x02, 0xFE) == "realtime"
    assert command_name(0xC7, 0xFE) == "custom"
    assert command_name(0x55, 0xFE) == "other"
    assert command_name(0x81, 0x01) == "set_response"


def test_scrypt_hashes_verify_and_are_salted() -> None:
    a, b = hash_password("pw", n=2**10), hash_password("pw", n=2**10)
    assert a != b and a.startswith("scrypt$1024$8$1$")
    assert verify_password("pw", a) and not verify_password("px", a)
    assert not verify_password("pw", "scrypt$broken")


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_accounts_file_rotation_is_reloaded(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"accounts{suffix}"
    assert set_password(path, "oem1", "first") is False
    assert set_password(path, "平台", "other") is False  # GB 18030 user names
    accounts = Accounts(path, check_every_s=0)
    stored = accounts.lookup("oem1")
    assert stored is not None and verify_password("first", stored)
    assert set_password(path, "oem1", "second") is True
    os.utime(path, ns=(1, 1))  # a rewrite within one mtime tick must still be seen
    stored = accounts.lookup("oem1")
    assert stored is not None and verify_password("second", stored)
    assert accounts.lookup("平台") is not None and accounts.lookup("nobody") is None
    path.write_text("not [valid", encoding="utf-8")
    os.utime(path, ns=(2, 2))
    assert accounts.lookup("oem1") == stored  # a broken file keeps the previous table


def test_accounts_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        Accounts(tmp_path / "missing.toml")
    with pytest.raises(UserError, match="12 bytes"):
        set_password(tmp_path / "a.toml", "x" * 13, "pw")
    # The login's text fields are read without surrounding spaces and NULs: such a password or
    # user could never log in
    for user, password in (("oem1", " s3cret "), ("oem1", "s3cret\0"), (" oem1", "pw")):
        with pytest.raises(UserError, match="no space or NUL"):
            set_password(tmp_path / "a.toml", user, password)
    with pytest.raises(UserError, match="GB 18030"):
        set_password(tmp_path / "a.toml", "oem1", "pw\udc80")
    assert not (tmp_path / "a.toml").exists()


def test_limits() -> None:
    bucket = TokenBucket(10, 10, 0.0)
    assert bucket.take(10, 0.0) == 0
    assert bucket.take(5, 0.0) == pytest.approx(0.5)
    budget = Budget(4, 1000)
    for _ in range(4):
        budget.take(10)
    assert budget.full
    assert budget.give(10) is True and not budget.full  # 3 <= 4 * 0.75
    clock = iter([0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 200.0, 300.0]).__next__
    gate = LogGate(60, clock)
    assert gate.allow("1.2.3.4", "garbage") == 0
    assert gate.allow("1.2.3.4", "garbage") is None
    assert gate.allow("1.2.3.4", "garbage") is None
    # next interval: its first line says the two held back (it said 0: they were forgotten)
    assert gate.allow("1.2.3.4", "garbage") == 2
    assert gate.allow("1.2.3.4", "garbage") is None
    assert gate.allow("5.6.7.8", "garbage") == 0  # at 200: 1.2.3.4's one carried, unused
    assert gate.allow("1.2.3.4", "garbage") == 0  # at 300: silent for a whole interval
