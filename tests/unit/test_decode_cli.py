"""``nev-ingest decode`` end to end (a subprocess, as a user runs it): hex files, stdin,
binary captures; exit status and counts."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.unit.test_battery_golden import CODE, LOGOUT_2016, REALTIME_2016
from tests.unit.test_charger_golden import REALTIME
from tests.unit.test_charger_tcec import CHARGE_STATUS
from tests.unit.vectors_support import NOT_A_VIN, load_vectors

pytestmark = pytest.mark.unit

VECTORS = load_vectors()
GOOD = [v["hex"] for v in VECTORS if v["bcc_ok"] and v["index"] not in NOT_A_VIN]


def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", "decode", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_hex_file_with_rejected_frames_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "frames.hex"
    path.write_text("; a comment\n\n" + "\n".join(v["hex"] for v in VECTORS) + "\n")
    res = _run(str(path))
    assert res.returncode == 1
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == len(VECTORS)
    errors = [x for x in lines if "error" in x]
    assert sorted(e["error"]["reason"] for e in errors) == ["bad_checksum"] * 3 + [
        "bad_identity"
    ] * len(NOT_A_VIN)
    assert errors[0]["source"].startswith(f"{path}:")
    assert b"6 rejected (bad_checksum: 3, bad_identity: 3)" in res.stderr
    assert lines[0]["vin"] == "HAUV4BGN6S5002219" and lines[0]["edition"] == 2025


def test_stdin_hex_all_good_exits_0() -> None:
    res = _run(stdin=("\n".join(f"0x{h}" for h in GOOD[:20]) + "\n").encode())
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 20
    assert b"20 frames, 20 decoded" in res.stderr


def test_not_hex_is_reported_per_line() -> None:
    res = _run("-", stdin=b"zz\n" + GOOD[0].encode() + b"\n")
    assert res.returncode == 1
    first, second = (json.loads(x) for x in res.stdout.splitlines())
    assert first["error"]["reason"] == "bad_hex" and first["source"] == "<stdin>:1"
    assert second["command"] == 1


def test_binary_capture_with_stray_bytes(tmp_path: Path) -> None:
    path = tmp_path / "capture.bin"
    path.write_bytes(b"\x7e".join(bytes.fromhex(h) for h in GOOD) + b"\x7e")
    res = _run("--binary", str(path))
    assert res.returncode == 0, res.stderr  # stray bytes are counted, not failures
    assert len(res.stdout.splitlines()) == len(GOOD)
    assert f"{len(GOOD)} bytes skipped".encode() in res.stderr


def test_hex_text_read_as_a_binary_capture_is_no_success(tmp_path: Path) -> None:
    path = tmp_path / "frames.hex"
    path.write_text("\n".join(GOOD) + "\n")
    res = _run("--binary", str(path))
    assert res.returncode == 1 and res.stdout == b""
    assert b"no frame in the input: is it hex text? (then leave out --binary)" in res.stderr


def test_binary_capture_with_a_broken_frame_exits_1(tmp_path: Path) -> None:
    broken = bytearray.fromhex(GOOD[0])
    broken[-1] ^= 0xFF
    path = tmp_path / "capture.bin"
    path.write_bytes(bytes.fromhex(GOOD[1]) + bytes(broken) + bytes.fromhex(GOOD[2]))
    res = _run("--binary", str(path))
    assert res.returncode == 1
    assert len(res.stdout.splitlines()) == 2
    assert b"(bad_checksum)" in res.stderr


def test_missing_file_is_a_one_line_usage_error() -> None:
    res = _run("/nonexistent/frames.hex")
    assert res.returncode == 2
    assert res.stderr.decode().strip().splitlines() == [
        "nev-ingest: error: cannot read /nonexistent/frames.hex: "
        "No such file or directory; check the path"
    ]


# --- --profile charger | battery | tcec -----------------------------------------------------


def test_charger_profile_prints_the_rows_by_table() -> None:
    res = _run("--profile", "charger", stdin=REALTIME.hex().encode() + b"\nzz\n")
    assert res.returncode == 1  # the second line is no hex
    first, second = (json.loads(x) for x in res.stdout.splitlines())
    assert (first["profile"], first["charger_id"], first["ts_ms"]) == (
        "charger",
        "MA01H3BQ2P0000001",
        1740794400000,
    )
    (telemetry,) = first["telemetry"]
    assert (telemetry["connector_id"], telemetry["voltage_v"], telemetry["vin"]) == (
        "MA01H3BQ2P000000101",
        400.0,
        "LSVAU2180N2183294",
    )
    assert first["statuses"][0]["status"] == 3 and first["sessions"] == []
    assert second["error"]["reason"] == "bad_hex"


def test_battery_profile_prints_the_pack_frame_and_binary_captures_work(tmp_path: Path) -> None:
    capture = tmp_path / "packs.bin"
    capture.write_bytes(REALTIME_2016 + b"\x7e" + LOGOUT_2016)
    res = _run("--profile", "battery", "--binary", str(capture))
    assert res.returncode == 0, res.stderr
    realtime, logout = (json.loads(x) for x in res.stdout.splitlines())
    assert (realtime["profile"], realtime["pack_code"]) == ("battery", CODE)
    assert logout["command"] == 4
    # Read as a vehicle frame (the default profile), the pack code is an unknown block.
    res = _run(stdin=REALTIME_2016.hex().encode())
    vehicle = json.loads(res.stdout)
    assert "pack_code" not in vehicle and vehicle["tail_reason"] == "unknown_type"


def test_tcec_profile_reads_lines_with_flags_or_fields() -> None:
    status = {"ConnectorStatusInfo": {"ConnectorID": "MA01H3BQ2P000000101", "Status": 255}}
    lines = [
        status,  # interface, operator and time from the flags: Seq 0001, numbered
        {
            "interface": "notification_stationStatus",
            "operator_id": "MA01H3BQ2",
            "timestamp": "20250301103000",
            "data": status,
        },  # the line's fields instead
        {"ConnectorStatusInfo": {"ConnectorID": "MA01H3BQ2P000000101", "Status": 7}},
        {"data": status, "interface": "notification_nothing"},
    ]
    text = b"\n".join(json.dumps(x).encode() for x in lines) + b"\n{not json\n"
    flags = ("--interface", "notification_stationStatus", "--operator", "MA01H3BQ2")
    res = _run("--profile", "tcec", *flags, "--timestamp", "20250301100000", stdin=text)
    assert res.returncode == 1
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["statuses"][0]["ts"] for o in out[:2]] == [
        "2025-03-01T10:00:00.000001+08:00",
        "2025-03-01T10:30:00+08:00",
    ]
    assert out[0]["profile"] == "tcec" and out[0]["statuses"][0]["status"] == 255
    reasons = [(o["error"]["reason"], o["source"]) for o in out[2:]]
    assert reasons == [
        ("bad_code", "<stdin>:3"),
        ("unknown_interface", "<stdin>:4"),
        ("bad_json", "<stdin>:5"),
    ]
    assert b"3 rejected (bad_code: 1, bad_json: 1, unknown_interface: 1)" in res.stderr


def test_tcec_profile_reads_the_seq_and_prints_the_time_rows_are_stored_with() -> None:
    # The gateway's tcec_seq puts a status push at TimeStamp + Seq µs (push_time); a line
    # carries no headers, so the Seq comes from --seq or the line's "seq".
    status = {"ConnectorStatusInfo": {"ConnectorID": "MA01H3BQ2P000000101", "Status": 3}}
    lines = [
        status,  # TimeStamp and Seq from the flags
        {"timestamp": "20250301103000", "seq": "0002", "data": status},
        {"seq": "9999", "data": status},  # the flags' TimeStamp, the line's Seq
        {"seq": "12", "data": status},
    ]
    text = b"\n".join(json.dumps(x).encode() for x in lines) + b"\n"
    flags = ("--interface", "notification_stationStatus", "--operator", "MA01H3BQ2")
    res = _run("--profile", "tcec", *flags, "--timestamp", "20250301100000", "--seq", "0007",
               stdin=text)  # fmt: skip
    assert res.returncode == 1, res.stderr
    out = [json.loads(x) for x in res.stdout.splitlines()]
    stored = [
        "2025-03-01T10:00:00.000007+08:00",
        "2025-03-01T10:30:00.000002+08:00",
        "2025-03-01T10:00:00.009999+08:00",
    ]
    assert [o["pushed_at"] for o in out[:3]] == stored
    assert [o["statuses"][0]["ts"] for o in out[:3]] == stored
    assert list(out[0])[-1] == "pushed_at"  # added after the fields that were there
    assert out[3]["error"]["reason"] == "bad_time" and "Seq '12'" in out[3]["error"]["detail"]
    one = json.dumps(status).encode()
    # A Seq counts within a TimeStamp: none given is the line's error, not "now".
    res = _run("--profile", "tcec", *flags, "--seq", "0001", stdin=one)
    assert res.returncode == 1 and json.loads(res.stdout)["error"]["reason"] == "missing_field"
    res = _run("--profile", "tcec", *flags, "--seq", "7", stdin=b"")
    assert res.returncode == 2 and res.stderr.count(b"\n") == 1 and b"4 digits" in res.stderr
    res = _run("--seq", "0001", stdin=b"")
    assert res.returncode == 2 and b"--profile tcec" in res.stderr


def test_tcec_profile_numbers_the_lines_that_take_the_flags_envelope(tmp_path: Path) -> None:
    # All such lines share --timestamp's second: one Seq for all gave every push of a
    # connector one time (rules test counted the later ones duplicates). decode numbers them
    # as rules test does, so that both commands give a push the same time.
    status = {"ConnectorStatusInfo": {"ConnectorID": "MA01H3BQ2P000000101", "Status": 3}}
    flags = ("--interface", "notification_stationStatus", "--operator", "MA01H3BQ2")
    # Without --seq the lines taking the flags' TimeStamp and Seq are numbered from 0001, as
    # a gateway numbers a second's pushes; a line with its own TimeStamp and no Seq keeps the
    # TimeStamp itself, as the pipeline stores a record without tcec_seq.
    one = json.dumps(status).encode()
    stamped = json.dumps({"timestamp": "20250301100005", "data": status}).encode()
    res = _run("--profile", "tcec", *flags, "--timestamp", "20250301100000",
               stdin=b"\n".join([one, stamped, one]))  # fmt: skip
    assert [json.loads(x)["pushed_at"] for x in res.stdout.splitlines()] == [
        "2025-03-01T10:00:00.000001+08:00",
        "2025-03-01T10:00:05+08:00",
        "2025-03-01T10:00:00.000002+08:00",
    ]
    # Files are numbered on: they share the one TimeStamp.
    path = tmp_path / "one.jsonl"
    path.write_bytes(one + b"\n")
    res = _run("--profile", "tcec", *flags, "--timestamp", "20250301100000", "--seq", "0009",
               str(path), "-", stdin=one)  # fmt: skip
    assert [json.loads(x)["pushed_at"] for x in res.stdout.splitlines()] == [
        "2025-03-01T10:00:00.000009+08:00",
        "2025-03-01T10:00:00.000010+08:00",
    ]
    # Past Seq 9999 the second is full: a usage error naming the wrapped form.
    res = _run("--profile", "tcec", *flags, "--timestamp", "20250301100000", "--seq", "9999",
               stdin=one + b"\n" + one)  # fmt: skip
    assert res.returncode == 2 and b"Seq past 9999" in res.stderr.splitlines()[-1]
    assert b"wrapped form" in res.stderr


def test_tcec_usage_errors_exit_2() -> None:
    res = _run("--profile", "tcec", "--binary", stdin=b"{}\n")
    assert res.returncode == 2 and b"--binary" in res.stderr
    res = _run("--operator", "MA01H3BQ2", stdin=b"")
    assert res.returncode == 2 and b"--profile tcec" in res.stderr
    res = _run("--profile", "tcec", "--timestamp", "2025-03-01", stdin=b"{}\n")
    assert res.returncode == 1 and b"missing_field" in res.stdout  # no interface given


def test_tcec_profile_without_a_timestamp_takes_now_in_whole_seconds() -> None:
    # No TimeStamp: the push's time is now, to the second, as a TimeStamp (whole seconds)
    # with no Seq would give. now()'s microseconds would put the charge status at EndTime +
    # random µs, a time the pipeline never stores (it adds Seq <= 9999 µs).
    charge = json.dumps(CHARGE_STATUS).encode() + b"\n"
    flags = ("--interface", "notification_equip_charge_status", "--operator", "MA01H3BQ2")
    res = _run("--profile", "tcec", *flags, stdin=charge)
    assert res.returncode == 0, res.stderr
    (out,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert datetime.fromisoformat(out["pushed_at"]).microsecond == 0
    assert [t["ts"] for t in out["telemetry"]] == ["2025-03-01T10:00:00+08:00"]
