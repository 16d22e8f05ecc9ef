"""The charger and pack benchmarks and fuzzers run and report as documented: the fast path next
to the vehicle's and the ceiling in one run, the last stdout line one JSON object; the fuzzer
feeds both decoders of a profile and finds no input they decide differently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtest import bench_battery, bench_charger, fuzz_decode

pytestmark = pytest.mark.unit


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return result


def test_bench_charger_reports_the_fast_path_beside_the_vehicle_and_the_ceiling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_charger.main(["--seconds", "0.01"]) == 0
    result = _last_json(capsys)
    for phase in (
        "ceiling_parse_envelope",
        "vehicle_fast_rows",
        "charger_rows",
        "tcec_charge_status",
    ):
        assert result[phase]["frames_per_s"] > 0


def test_bench_battery_reports_the_fast_path_beside_the_vehicle_and_the_ceiling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_battery.main(["--seconds", "0.01", "--packs", "20"]) == 0
    result = _last_json(capsys)
    for phase in ("ceiling_parse_envelope", "vehicle_fast_decode_rows", "fast_decode_pack_rows"):
        assert result[phase]["frames_per_s"] > 0


@pytest.mark.parametrize("profile", ["charger", "battery"])
def test_fuzz_smoke(profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crashes = tmp_path / "crashes.hex"
    argv = ["--profile", profile, "--count", "3000", "--crashes", str(crashes)]
    assert fuzz_decode.main(argv) == 0
    result = _last_json(capsys)
    assert (result["profile"], result["crashes"], crashes.exists()) == (profile, 0, False)
    # The mutations reach past the envelope: frames decode, and blocks are rejected too.
    assert result["decoded"] > 0
    assert {"bad_checksum", "bad_field", "bad_identity"} <= set(result["rejected"])
