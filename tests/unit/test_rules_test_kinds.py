"""``nev-ingest rules test --kind``: each entity kind's frames through that kind's rules.

Scored as vehicles (the only kind it ran), charger and pack frames once raised nothing and the
run reported "0 raised", exit 0; a rule file with only pack or charger rules ran no rule and
passed. Now the kind's decoder and engine run, as the pipeline's for that kind's topic, frames
of another profile are skipped as wrong_topic (exit 1), the rules of the other kinds are named
in a warning, and a file without the kind's rules is refused."""

from __future__ import annotations

import binascii
from pathlib import Path

import pytest

from devtools.sim.bench_frames import realtime_frames
from devtools.sim.envelope import china_time
from ingest.cli import main
from tests.integration import kinds_frames as kf

pytestmark = pytest.mark.unit

DEFAULT = str(Path(__file__).parents[2] / "alerts" / "default_rules.toml")
START_MS = 1_782_835_200_000  # 2026-07-01 00:00 +08:00


def _frames(tmp_path: Path) -> Path:
    """5 charger frames (a connector at 120 °C) and 5 pack frames (thermal runaway, level 4)
    interleaved, 10 s apart."""
    lines = []
    for i in range(5):
        ts = china_time(START_MS + i * 10_000)
        hot = (400.0, 125.5, 50.2, 12.3, 120)
        lines.append(kf.charger_realtime(ts, kf.connector(1), status=255, output=hot)[0])
        lines.append(kf.pack_realtime(ts, alarm=(4, 1 << 19, ()))[0])
    path = tmp_path / "kinds.hex"
    path.write_text("".join(binascii.hexlify(raw).decode() + "\n" for raw in lines))
    return path


def test_charger_and_pack_frames_are_not_scored_as_vehicles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = _frames(tmp_path)
    assert main(["rules", "test", DEFAULT, "--frames", str(frames)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert "0 vehicle frames" in out.err and "10 skipped (10 wrong_topic)" in out.err
    assert f"{frames}:1: skipped (wrong_topic)" in out.err and "--kind charger" in out.err
    assert f"{frames}:2: skipped (wrong_topic)" in out.err and "--kind battery" in out.err
    # The file's other kinds are named, not silently left out.
    assert "charger rule(s) are not run" in out.err
    assert "battery rule(s) are not run" in out.err


def test_kind_battery_runs_the_pack_rules_on_the_pack_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = _frames(tmp_path)
    assert main(["rules", "test", DEFAULT, "--frames", str(frames), "--kind", "battery"]) == 1
    out = capsys.readouterr()
    raised = [line.split()[5] for line in out.out.splitlines() if " raised " in line]
    assert "pack_thermal_event" in raised
    assert f"  raised   critical {kf.PACK}  pack_thermal_event" in out.out
    assert "5 battery frames (5 in order" in out.err
    assert "5 skipped (5 wrong_topic)" in out.err  # the charger frames
    assert "vehicle rule(s) are not run" in out.err


def test_kind_charger_runs_the_charger_rules_per_connector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    charger_only = tmp_path / "charger.hex"
    charger_only.write_text(
        "".join(line + "\n" for line in _frames(tmp_path).read_text().split()[::2])
    )
    assert main(["rules", "test", DEFAULT, "--frames", str(charger_only), "--kind", "charger"]) == 0
    out = capsys.readouterr()
    entity = f"{kf.OPERATOR}:{kf.connector(1)}"
    assert f"raised   major    {entity}  connector_over_temp" in out.out
    assert "5 charger frames (5 connector reports in order" in out.err
    assert "0 skipped;" in out.err


def test_a_vehicle_frame_under_another_kind_is_wrong_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = tmp_path / "vehicle.hex"
    pairs = realtime_frames(1, 2, start_ms=START_MS)
    frames.write_text("".join(binascii.hexlify(raw).decode() + "\n" for _, raw in pairs))
    for kind in ("battery", "charger"):
        assert main(["rules", "test", DEFAULT, "--frames", str(frames), "--kind", kind]) == 1
        err = capsys.readouterr().err
        assert "2 skipped (2 wrong_topic)" in err and "test it with --kind vehicle" in err


def test_a_rule_file_without_rules_of_the_kind_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "packs.toml"
    rules.write_text(
        '[[rule]]\nid = "pack_hot"\nentity = "battery"\nkind = "threshold"\n'
        'severity = "major"\nfield = "probe_max_c"\nop = ">="\nvalue = 60\n'
    )
    assert main(["rules", "test", str(rules), "--frames", str(_frames(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no vehicle rule" in err and "--kind battery" in err


def test_decoded_row_json_frames_are_vehicles_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = tmp_path / "frames.jsonl"
    frames.write_text('{"vin": "LTEST000000000001", "ts_ms": 1782835200000, "max_temp_c": 61}\n')
    assert main(["rules", "test", DEFAULT, "--frames", str(frames), "--kind", "battery"]) == 1
    assert "give battery frames as hex" in capsys.readouterr().err
