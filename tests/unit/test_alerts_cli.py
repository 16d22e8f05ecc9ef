"""``nev-ingest rules check|test`` end to end through the console entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from alerts import RuleEngine
from alerts.frames import build_frame
from contract.rows import FrameRows
from devtools.sim.scenarios import thermal_runaway
from ingest.cli import main
from ingest.config.limits import CELLS_PER_FRAME
from loadtest.vectors import vectors_path

pytestmark = pytest.mark.unit

DEFAULT = str(Path(__file__).parents[2] / "alerts" / "default_rules.toml")
VECTORS = vectors_path()


def as_json(fr: FrameRows) -> bytes:
    v = fr.vehicle
    assert v is not None
    fields = {
        k: getattr(v, k)
        for k in (
            "max_temp_c",
            "min_cell_voltage_v",
            "max_alarm_level",
            "general_flags",
            "soc_pct",
            "total_voltage_v",
            "vehicle_state",
        )
    }
    return orjson.dumps(
        {"vin": fr.vin, "ts_ms": fr.ts_ms, "edition": fr.edition, "command": fr.command, **fields}
    )


def test_check_accepts_the_default_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", DEFAULT]) == 0
    out = capsys.readouterr().out
    assert "OK, 38 rules" in out
    assert "per entity kind: vehicle 17, charger 6, battery 15" in out


def test_check_reports_every_problem_with_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rule]]\nid = "x"\nkind = "rate"\nseverity = "high"\n'
        'field = "max_temp_c"\nrate_per_s = -1\n'
    )
    assert main(["rules", "check", str(bad)]) == 2  # invalid input: exit 2
    err = capsys.readouterr().err.splitlines()
    choices = "must be one of info, warning, major, critical; got 'high'"
    assert f"{bad}:4: error: rule x key 'severity': {choices}" in err
    assert f"{bad}:6: error: rule x key 'rate_per_s': must be a number > 0, got -1" in err
    assert err[-1] == f"{bad}: 2 error(s): fix them and run the check again"


def test_check_of_a_missing_file_is_a_one_line_user_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["rules", "check", "/nonexistent/rules.toml"]) == 2
    assert capsys.readouterr().err.startswith("nev-ingest: error: cannot read rule file")


def test_test_replays_json_frames_and_prints_the_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = tmp_path / "frames.jsonl"
    frames.write_bytes(b"\n".join(as_json(f) for f in thermal_runaway(edition=2025)) + b"\n")
    assert main(["rules", "test", DEFAULT, "--frames", str(frames)]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert sum("raised" in line and "gb38031_thermal_runaway" in line for line in lines) == 1
    assert (
        "2026-07-01 14:00:21  raised   critical LNEVTR0000000001   gb38031_thermal_runaway"
        in out.out
    )
    assert "0 skipped" in out.err


def test_test_json_output_and_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = tmp_path / "frames.txt"
    hot = [
        build_frame("LTEST000000000001", 1_782_835_200_000 + i * 10_000, max_temp_c=61 + i)
        for i in range(3)
    ]
    frames.write_bytes(b"# comment\nnot hex at all\n" + b"\n".join(as_json(f) for f in hot))
    assert main(["rules", "test", DEFAULT, "--frames", str(frames), "--format", "json"]) == 1
    out = capsys.readouterr()
    msgs = [orjson.loads(line) for line in out.out.splitlines()]
    assert [(m["type"], m["rule_id"]) for m in msgs] == [("raised", "max_temp_high")]
    assert f"{frames}:2: skipped, neither hex nor a JSON frame" in out.err


@pytest.mark.parametrize(
    "bad",
    [
        '"max_temp_c": "hot"',
        '"max_temp_c": [61]',
        '"max_temp_c": true',
        '"general_flags": 1.5',
        '"general_flags": 4294967296',
        '"max_temp_c": 9007199254740993',
        '"speed_kmh": -9007199254740993',
        '"packs": [{"pack": 1, "voltage_v": 9007199254740993}]',
        '"position_valid": 1',
        '"packs": [{"pack": 1, "voltage_v": "400"}]',
        '"packs": [{"pack": 1, "cells_mv": [70000]}]',
        '"packs": [{"pack": 1, "cells_mv": "3600"}]',
        '"command": null',
        '"packs": [{"pack": null}]',
        '"packs": [{"first_cell": null}]',
        '"packs": [{"first_cell": -1}]',
        '"packs": [{"pack": 1, "cell_voltages_raw": "ab"}]',
        '"command": "2"',
        '"command": 300',
        '"edition": 2017',
        '"edition": "2016"',
    ],
)
def test_test_skips_json_frames_with_values_of_the_wrong_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    # The engine compares numbers: a wrong type is a bad line of the input, never a traceback.
    hot = as_json(build_frame("LTEST000000000001", 1_782_835_200_000, max_temp_c=61))
    frames = tmp_path / "frames.txt"
    odd = '{"vin": "LTEST000000000001", "ts_ms": 1782835100000, ' + bad + "}"
    frames.write_bytes(odd.encode() + b"\n" + hot + b"\n" + hot.replace(b"200000", b"210000"))
    assert main(["rules", "test", DEFAULT, "--frames", str(frames)]) == 1
    out = capsys.readouterr()
    assert f"{frames}:1: skipped, neither hex nor a JSON frame" in out.err
    assert "1 skipped" in out.err and "max_temp_high" in out.out


def test_test_skips_frames_the_pipeline_would_dead_letter_over_a_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The pipeline dead-letters a frame over an input limit (over_limit): rules test must not
    # predict alerts from it.
    hot = orjson.loads(as_json(build_frame("LTEST000000000001", 1_782_835_200_000, max_temp_c=61)))
    cells = [3600] * (CELLS_PER_FRAME + 1)
    frames = tmp_path / "frames.txt"
    frames.write_bytes(orjson.dumps({**hot, "packs": [{"pack": 1, "cells_mv": cells}]}))
    assert main(["rules", "test", DEFAULT, "--frames", str(frames)]) == 1
    out = capsys.readouterr()
    assert "over the limit cells_per_frame" in out.err and "1 skipped" in out.err
    assert "max_temp_high" not in out.out


def test_test_decodes_hex_frames_with_the_fast_path(capsys: pytest.CaptureFixture[str]) -> None:
    # 3 bad-BCC vectors, and 3 logins / logouts whose ID is no VIN (vectors_support.NOT_A_VIN)
    assert main(["rules", "test", DEFAULT, "--frames", str(VECTORS)]) == 1
    out = capsys.readouterr()
    # the public vectors hold real level-3 alarm frames (e.g. XL2CEF5P0AL007023, level 3)
    assert "XL2CEF5P0AL007023  alarm_level_3" in out.out
    assert "bad_checksum" in out.err and "bad_identity" in out.err and "6 skipped" in out.err


def test_a_pack_numbered_0_with_a_first_cell_of_0_is_a_frame() -> None:
    # out of the standard's ranges, yet what the decoder keeps: rules test takes it too
    from alerts.frames import frame_from_json

    frame = frame_from_json(
        {"vin": "LTEST000000000001", "ts_ms": 1_782_835_200_000, "packs": [
            {"pack": 0, "first_cell": 0, "cells_mv": [3300, 3310]}
        ]}
    )  # fmt: skip
    assert [(p.pack, p.first_cell) for p in frame.packs] == [(0, 0)]


def test_a_json_frame_gives_the_numbers_a_decoder_gives() -> None:
    # An int beyond 2**53 reached the native runner, which refuses it (rules test: a rule
    # error, exit 3) while the Python runner judged it: no decoder gives one (a DWORD at most).
    from alerts.frames import FrameSpecError, frame_from_json

    vin, ts = "LTEST000000000001", 1_782_835_200_000
    frame = frame_from_json(
        {"vin": vin, "ts_ms": ts, "max_temp_c": 2**53, "speed_kmh": 1e300,
         "general_flags": 0xFFFFFFFF}
    )  # fmt: skip
    assert frame.vehicle is not None
    assert (frame.vehicle.max_temp_c, frame.vehicle.general_flags) == (2**53, 0xFFFFFFFF)
    with pytest.raises(FrameSpecError, match=r"speed_kmh = 9007199254740993: expected a number"):
        frame_from_json({"vin": vin, "ts_ms": ts, "speed_kmh": 2**53 + 1})
    with pytest.raises(FrameSpecError, match=r"general_flags = 4294967296: expected an int"):
        frame_from_json({"vin": vin, "ts_ms": ts, "general_flags": 2**32})


@pytest.mark.parametrize(("name", "value"), [("max_temp_c", 41.5), ("soc_pct", 80.0)])
def test_a_json_frame_refuses_a_fraction_for_an_integer_field(name: str, value: float) -> None:
    # A decoder gives max_temp_c, soc_pct, ... as ints: 41.5 is no value a frame can carry,
    # and a rule would judge it as no frame the pipeline sees (41.5 > 41 with a threshold 41).
    from alerts.frames import FrameSpecError, frame_from_json

    base = {"vin": "LTEST000000000001", "ts_ms": 1_782_835_200_000}
    with pytest.raises(FrameSpecError, match=rf"{name} = {value}: expected an int within"):
        frame_from_json({**base, name: value})
    with pytest.raises(FrameSpecError, match=r"cell_count = 2.5: expected an int within"):
        frame_from_json({**base, "packs": [{"cell_count": 2.5}]})
    assert frame_from_json({**base, "max_temp_c": 41, "speed_kmh": 41.5}).vehicle is not None


def test_test_prints_a_rule_that_raises_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runbook (docs/operations.md, NevIngestRuleErrors) replays an entity's frames with
    # rules test to reproduce a rule's error: the engine's safety net catches it, so rules
    # test must say so, not skip the frame in silence and exit 0.
    hold = RuleEngine._hold

    def defective(self: RuleEngine, ent: Any, cr: Any, vin: str, t: int, v: Any) -> None:
        if v == 99:  # a lifecycle defect on one value
            raise ArithmeticError("defect on 99")
        hold(self, ent, cr, vin, t, v)

    monkeypatch.setattr(RuleEngine, "_hold", defective)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nid = "hot"\nkind = "threshold"\nseverity = "major"\n'
        'field = "max_temp_c"\nvalue = 60\n'
    )
    frames = tmp_path / "frames.jsonl"
    frames.write_bytes(
        as_json(build_frame("LTEST000000000001", 1_782_835_200_000, max_temp_c=70))
        + b"\n"
        + as_json(build_frame("LTEST000000000002", 1_782_835_200_000, max_temp_c=99))
    )
    assert main(["rules", "test", str(rules), "--frames", str(frames)]) == 3
    out = capsys.readouterr()
    assert "LTEST000000000001  hot" in out.out and "LTEST000000000002" not in out.out
    err = out.err.splitlines()
    assert (
        f"{rules}: error: rule 'hot' raised judging a frame of entity LTEST000000000002, which "
        "it and the rules after it skipped: ArithmeticError: defect on 99"
    ) in err
    assert err[-1].endswith("1 still open; 1 rule error(s)")
