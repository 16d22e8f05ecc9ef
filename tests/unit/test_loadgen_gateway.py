"""``loadgen --via-gateway``'s pure parts: the session frames a client sends (they must decode
as the commands they claim), answers checked against their requests, targets, source
addresses, credentials and the descriptor limit."""

from __future__ import annotations

import argparse
import itertools
import resource
from pathlib import Path

import pytest

from devtools import loadgen_gateway as gw
from devtools.loadgen_net import nofile_for, parse_source_addrs, parse_targets
from devtools.sim import gbt_session as s
from devtools.sim import identities
from devtools.sim.envelope import frame, time_bytes
from devtools.sim.scale import ScaleOptions, scale_messages
from ingest.decoders import Logout, PlatformLogin, decode_frame
from ingest.decoders.framer import RawFrame, StreamFramer

pytestmark = pytest.mark.unit

NOW = 1_782_878_400_000  # 2026-07-01 12:00 +08:00
VIN = "LNEVSIM0000000042"


@pytest.mark.parametrize("edition", [2016, 2025])
def test_session_frames_decode_as_their_commands(edition: int) -> None:
    login = decode_frame(s.vehicle_login(VIN, edition, NOW, seq=7))
    assert (login.command, login.vin, login.edition) == (0x01, VIN, edition)
    assert login.body is not None and login.body.login_seq == 7  # type: ignore[attr-defined]
    assert s.login_seq_of(s.vehicle_login(VIN, edition, NOW, seq=7)) == 7
    logout = decode_frame(s.vehicle_logout(VIN, edition, NOW, 7))
    assert (logout.command, logout.body) == (0x04, Logout(7))
    assert decode_frame(s.heartbeat(VIN, edition)).command == 0x07
    assert decode_frame(s.time_calibration(VIN, edition)).command == 0x08
    plat = decode_frame(s.platform_login("LOADGENPLAT000001", edition, NOW, "oem", "secret"))
    assert plat.command == 0x05 and plat.vin == "LOADGENPLAT000001"
    assert plat.body == PlatformLogin(1, "oem", "secret", 0x01)
    assert decode_frame(s.platform_logout("LOADGENPLAT000001", edition, NOW, 1)).command == 0x06


def _answer(request: bytes, flag: int = 0x01, unit: bytes | None = None) -> s.Answer:
    """The body-rule answer (6.3.2): the request's header, new flag, the request's time."""
    edition = s.edition_of(request)
    if unit is None:
        unit = request[24:30] if len(request) > 25 else b""
    raw = frame(edition, request[2], request[4:21].decode(), unit, response=flag)
    return s.parse_answer(raw)


def test_a_body_rule_answer_is_accepted_and_a_wrong_one_says_why() -> None:
    login = s.vehicle_login(VIN, 2016, NOW)
    assert s.check_answer(login, _answer(login), NOW) is None
    assert s.check_answer(login, _answer(login, 0x03), NOW) == "refused_0x03"
    assert s.check_answer(login, _answer(login, unit=time_bytes(NOW + 5000)), NOW) == "time"
    other = s.vehicle_login("LNEVSIM0000000043", 2016, NOW)
    assert s.check_answer(login, _answer(other), NOW) == "identity"
    assert s.check_answer(login, _answer(s.vehicle_logout(VIN, 2016, NOW, 1)), NOW) == "command"
    beat = s.heartbeat(VIN, 2025)
    assert s.check_answer(beat, _answer(beat), NOW) is None  # N = 0, or with a time: both fine


def test_a_time_calibration_answer_must_carry_the_platforms_clock() -> None:
    req = s.time_calibration(VIN, 2016)
    assert s.check_answer(req, _answer(req, unit=time_bytes(NOW + 3000)), NOW) is None
    stale = _answer(req, unit=time_bytes(NOW - 3_600_000))
    assert s.check_answer(req, stale, NOW) == "calibration_time"
    assert s.check_answer(req, _answer(req, unit=b""), NOW) == "calibration_time"


def test_targets_and_source_addresses() -> None:
    assert parse_targets("127.0.0.1:32960, localhost:1") == [
        ("127.0.0.1", 32960),
        ("localhost", 1),
    ]
    for bad in ("127.0.0.1", ":80", "h:0", "h:x", ""):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_targets(bad)
    assert parse_source_addrs("127.0.0.2-127.0.0.4,127.0.1.1") == [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.1.1",
    ]
    for bad in ("127.0.0.9-127.0.0.2", "127.0.0.x", "10.0.0.0-10.0.255.255"):
        with pytest.raises(ValueError, match="--source-addrs"):
            parse_source_addrs(bad)


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_text("# accounts\noem-a:pw1\n\n oem-b : pw:2 \n", encoding="utf-8")
    assert gw.read_credentials(path) == [("oem-a", "pw1"), ("oem-b", "pw:2")]
    path.write_text("no colon here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"creds:1: a line is USER:PASSWORD"):
        gw.read_credentials(path)
    with pytest.raises(ValueError, match="cannot read --platform-credentials"):
        gw.read_credentials(tmp_path / "missing")


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "via_gateway": "127.0.0.1:32960",
        "source_addrs": None,
        "platforms": 0,
        "platform_user": None,
        "platform_password": None,
        "platform_credentials": None,
        "heartbeat_s": 30.0,
        "answer_timeout_s": 30.0,
        "device_share": (0, 1),
    }
    base.update(kw)
    return argparse.Namespace(**base)


def test_platforms_need_an_account() -> None:
    with pytest.raises(ValueError, match="--platforms needs an account"):
        gw.plan_from_args(_args(platforms=3))
    plan = gw.plan_from_args(_args(platforms=3, platform_user="u", platform_password="p"))
    assert plan.credentials == (("u", "p"),) and plan.platforms == 3
    assert len(gw.platform_code(123456)) == 17


def test_device_shares_split_a_fleet_without_overlap() -> None:
    def vins(share: tuple[int, int]) -> list[bytes]:
        o = ScaleOptions(devices=30, mix=(("vehicle", 1),), share=share, bad_ratio=0.0)
        return [m.key for m in itertools.islice(scale_messages(o), 200)]

    whole = set(vins((0, 1)))
    parts = [vins((k, 3)) for k in range(3)]
    assert [len(set(p)) for p in parts] == [10, 10, 10]
    assert set().union(*map(set, parts)) == whole
    assert set(parts[1]) == {identities.vin(1, i).encode() for i in range(1, 30, 3)}


def test_the_descriptor_limit_is_raised_or_refused_in_one_line() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        assert nofile_for(10) == soft  # already enough: untouched
        if hard != resource.RLIM_INFINITY:
            with pytest.raises(ValueError, match=r"hard limit is .*ulimit -n"):
                nofile_for(hard)
            assert nofile_for(hard - 64) == hard
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_frame_whose_bcc_is_a_hash_ends_a_read_and_the_next_frame_is_whole() -> None:
    """Found by the storm through the gateway (loadtest/storm.py): a read that ended with a
    frame whose BCC byte is "#" left that byte in the stream framer as a possible half marker;
    with the next frame's "##" it made a false start "###...", rejected (1 byte skipped) - or,
    when its BCC matched by chance (1 in 256), taken as a frame, losing the real one."""
    first = next(f for i in range(10_000) if (f := s.vehicle_logout(VIN, 2016, NOW, i))[-1] == 0x23)
    second = s.vehicle_login(VIN, 2016, NOW)
    stream = first + second + first
    for cut in range(1, len(stream)):
        framer = StreamFramer()
        out = framer.feed(stream[:cut]) + framer.feed(stream[cut:]) + framer.close()
        assert [type(x) for x in out] == [RawFrame] * 3, cut
        assert [x.data for x in out if isinstance(x, RawFrame)] == [first, second, first]
