"""``nev-ingest decode`` end to end (a subprocess, as a user runs it): hex files, stdin,
binary captures; exit status and counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
