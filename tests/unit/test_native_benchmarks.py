"""The issue-12 benchmarks run end to end on a few frames and report what the docs quote:
bench_native's phases and goals (without the rtm-con peer, which needs an install), and
bench_decode's batch and native JSON phases. Figures are not asserted (benchmarks, not timed
tests); their presence and sanity are."""

from __future__ import annotations

import json

import pytest

from loadtest import bench_decode, bench_hostile, bench_native

pytestmark = pytest.mark.unit


def _last_json(out: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_bench_native_reports_every_phase(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--seconds", "0.01", "--frames", "40", "--cli-frames", "60", "--no-peer"]
    assert bench_native.main(args) == 0
    result = _last_json(capsys.readouterr().out)
    phases = result["phases"]
    assert isinstance(phases, dict)
    for ed in (2016, 2025):
        for what in ("decode", "decode+encode", "json"):
            assert phases[f"native_pure_{what}_{ed}"]["frames_per_s"] > 0
    assert phases["native_batch_2016"]["frames_per_s"] > 0
    # The CLI decoded every line of its file (the same typical frames, cycled).
    assert phases["cli_typical_2016"]["frames"] == 60
    assert result["rtm_con"] == "skipped (--no-peer)" and result["ratios"] == {}
    assert isinstance(result["native_decode_encode_2016_meets_goal"], bool)


def test_bench_decode_reports_the_batch_and_native_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_decode.main(["--seconds", "0.01", "--frames", "30"]) == 0
    phases = _last_json(capsys.readouterr().out)["phases"]
    assert isinstance(phases, dict)
    batch = phases["batch_typical_2016"]
    # Per frame, not per batch: 30 frames a pass, ~342 bytes each.
    assert batch["distinct"] == 30 and 300 < batch["mean_frame_bytes"] < 400
    assert phases["json_native_typical_2025"]["rejected_per_pass"] == 0
    assert phases["batch_vectors"]["frames_per_s"] > 0


def test_bench_hostile_measures_both_shapes_against_their_ceilings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_hostile.main(["--passes", "3"]) == 0
    result = _last_json(capsys.readouterr().out)
    for shape in ("framer", "interleaved", "tail", "join"):
        assert float(result[f"{shape}_crafted_us"]) > 0  # type: ignore[arg-type]
        assert float(result[f"{shape}_ceiling_us"]) > 0  # type: ignore[arg-type]
    assert result["join_pack_rows"] == 14_115  # every entry a row of its own: none joined
    assert result["framer_bytes"] == 65_524 and float(result["markers_us"]) > 0  # type: ignore[arg-type]
