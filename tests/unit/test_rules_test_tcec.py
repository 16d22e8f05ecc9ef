"""``nev-ingest rules test --kind charger`` reads T/CEC 102 pushes as well as binary frames.

It read the charger profile's hex frames only: a file of the pushes an operator sends (JSON, as
``nev-ingest decode --profile tcec`` reads them) was refused line by line ("a decoded-row JSON
frame is a vehicle's"), so a charger rule could not be tried on them. Now a push line is
decoded by the pipeline's decoder of the T/CEC topic, its envelope fields as the gateway's
headers, and judged by the charger engine at the pipeline's time (TimeStamp + Seq µs): two
pushes of one second are two reports in order, not a duplicate."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest

from contract.clock import CHINA_TZ
from ingest.cli import main
from tests.kinds_traffic import OPERATOR, STATUS, connector, station_status

pytestmark = pytest.mark.unit

RULES = """
[[rule]]
id = "test_connector_fault"
entity = "charger"
kind = "threshold"
severity = "major"
title = "connector in fault"
field = "connector_status"
op = "=="
value = 255
"""
GUN = connector(7)
ENTITY = f"{OPERATOR}:{GUN}"
STAMP = "20260701100000"  # TimeStamp, Beijing time


def _rules(tmp_path: Path) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return str(path)


def _push(status: int, seq: str, stamp: str = STAMP) -> str:
    """A station-status push in decode --profile tcec's wrapped line form."""
    doc = {
        "interface": STATUS,
        "operator_id": OPERATOR,
        "timestamp": stamp,
        "seq": seq,
        "data": orjson.loads(station_status(GUN, status)),
    }
    return orjson.dumps(doc).decode()


def _write(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "pushes.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def _test(*args: str) -> int:
    return main(["rules", "test", *args, "--kind", "charger"])


def test_a_fault_status_push_raises_the_charger_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An idle connector, then in fault in the same second (Seq 0002): judged at TimeStamp +
    # Seq µs as the pipeline does, the fault is a report in order, not a duplicate of the first.
    frames = _write(tmp_path, [_push(2, "0001"), _push(255, "0002")])
    assert _test(_rules(tmp_path), "--frames", frames) == 0
    out = capsys.readouterr()
    opened = datetime(2026, 7, 1, 10, 0, 0, tzinfo=CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    assert f"{opened}  raised   major    {ENTITY}  test_connector_fault" in out.out, out
    assert "2 charger frames (2 connector reports in order, 0 late, 0 duplicate" in out.err
    assert "1 raised, 0 cleared, 1 still open" in out.err


def test_the_business_json_takes_its_envelope_from_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = _write(tmp_path, [station_status(GUN, 255).decode()])
    envelope = ["--interface", STATUS, "--operator", OPERATOR, "--timestamp", STAMP]
    assert _test(_rules(tmp_path), "--frames", frames, *envelope, "--format", "json") == 0
    (message,) = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (message["type"], message["entity_kind"], message["entity_id"]) == (
        "raised",
        "charger",
        ENTITY,
    )


ENVELOPE = ["--interface", STATUS, "--operator", OPERATOR, "--timestamp", STAMP]


def test_bare_pushes_of_one_second_are_numbered_and_judged_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The business JSON alone: all lines share --timestamp's second, and with the one Seq of
    # the flags they all had one time, the second push counted a duplicate and never judged
    # ("1 duplicate ... 0 raised", exit 0). Numbered from 0001 as a gateway numbers them,
    # idle then fault are two reports in order, and the fault raises.
    lines = [station_status(GUN, 2).decode(), station_status(GUN, 255).decode()]
    frames = _write(tmp_path, lines)
    assert _test(_rules(tmp_path), "--frames", frames, *ENVELOPE) == 0
    out = capsys.readouterr()
    assert f"raised   major    {ENTITY}  test_connector_fault" in out.out, out
    assert "2 charger frames (2 connector reports in order, 0 late, 0 duplicate" in out.err
    assert "1 raised, 0 cleared, 1 still open" in out.err
    # From --seq on: the same, and both commands give the pushes the same times.
    assert _test(_rules(tmp_path), "--frames", frames, *ENVELOPE, "--seq", "0041") == 0
    assert "1 raised" in capsys.readouterr().err
    decoded = main(["decode", "--profile", "tcec", *ENVELOPE, "--seq", "0041", frames])
    times = [orjson.loads(x)["pushed_at"] for x in capsys.readouterr().out.splitlines()]
    assert decoded == 0 and times == [
        "2026-07-01T10:00:00.000041+08:00",
        "2026-07-01T10:00:00.000042+08:00",
    ]


def test_numbering_past_seq_9999_is_a_usage_error_naming_the_wrapped_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [station_status(GUN, status).decode() for status in (2, 3, 255)]
    frames = _write(tmp_path, lines)
    assert _test(_rules(tmp_path), "--frames", frames, *ENVELOPE, "--seq", "9998") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Seq past 9999" in err, err
    assert "push 3 would get 10000" in err and "wrapped form" in err
    # Pushes with their own TimeStamp and Seq are not numbered: no limit there.
    wrapped = [_push(2, "9999"), _push(255, "0001", "20260701100001")]
    frames = _write(tmp_path, wrapped)
    assert _test(_rules(tmp_path), "--frames", frames, *ENVELOPE, "--seq", "9999") == 0
    assert "1 raised" in capsys.readouterr().err


def test_a_push_dated_in_year_one_is_shown_in_beijing_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before 0001-01-01 08:00 Beijing time there is no UTC time datetime can hold: showing
    # the alert's time crashed the command ("ValueError: year 0 is out of range").
    frames = _write(tmp_path, [_push(255, "0001", "00010101000000")])
    assert _test(_rules(tmp_path), "--frames", frames) == 0
    opened = datetime(1, 1, 1, tzinfo=CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    assert f"{opened}  raised   major    {ENTITY}" in capsys.readouterr().out


def test_a_push_without_its_timestamp_is_skipped_saying_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = _write(tmp_path, [station_status(GUN, 255).decode()])
    envelope = ["--interface", STATUS, "--operator", OPERATOR]
    assert _test(_rules(tmp_path), "--frames", frames, *envelope) == 1
    err = capsys.readouterr().err
    assert f"{frames}:1: skipped, not decodable:" in err and "give --timestamp" in err
    assert "0 raised" in err and "1 skipped (1 missing_field)" in err


def test_a_line_that_is_neither_a_frame_nor_a_push_is_named_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = _write(tmp_path, ["status: fault", "{not json", _push(255, "0001")])
    assert _test(_rules(tmp_path), "--frames", frames) == 1
    err = capsys.readouterr().err
    neither = "skipped, neither a hex frame nor a T/CEC 102 push (a JSON object)"
    assert f"{frames}:1: {neither}" in err and f"{frames}:2: {neither}" in err
    assert "2 skipped (2 bad_line); 1 raised" in err


def test_a_push_under_another_kind_is_wrong_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "packs.toml"
    rules.write_text(
        '[[rule]]\nid = "pack_hot"\nentity = "battery"\nkind = "threshold"\n'
        'severity = "major"\nfield = "max_temp_c"\nop = ">="\nvalue = 60\n'
    )
    frames = _write(tmp_path, [_push(255, "0001")])
    assert main(["rules", "test", str(rules), "--frames", frames, "--kind", "battery"]) == 1
    err = capsys.readouterr().err
    assert "skipped (wrong_topic), a T/CEC 102 push (a charger's), not a battery's" in err
    assert "test it with --kind charger" in err


def test_the_envelope_flags_are_for_charger_pushes_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = _write(tmp_path, [_push(255, "0001")])
    args = ["rules", "test", _rules(tmp_path), "--frames", frames, "--operator", OPERATOR]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "are for --kind charger" in err
    assert _test(_rules(tmp_path), "--frames", frames, "--seq", "12") == 2
    assert "give the envelope's Seq, 4 digits" in capsys.readouterr().err


def test_the_numbering_skips_the_seqs_wrapped_lines_gave_that_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A wrapped fault push at Seq 0001 of --timestamp's second, then a bare idle push: it was
    # numbered 0001 too, the same time, and the engine took it as a duplicate of the fault,
    # never judged ("1 duplicate", the fault still open). Numbered 0002, it is the next
    # report, and the idle connector clears the fault.
    frames = _write(tmp_path, [_push(255, "0001"), station_status(GUN, 2).decode()])
    assert _test(_rules(tmp_path), "--frames", frames, *ENVELOPE) == 0
    err = capsys.readouterr().err
    assert "2 charger frames (2 connector reports in order, 0 late, 0 duplicate" in err, err
    assert "1 raised, 1 cleared, 0 still open" in err, err
    decoded = main(["decode", "--profile", "tcec", *ENVELOPE, frames])
    times = [orjson.loads(x)["pushed_at"] for x in capsys.readouterr().out.splitlines()]
    assert decoded == 0 and times == [
        "2026-07-01T10:00:00.000001+08:00",
        "2026-07-01T10:00:00.000002+08:00",
    ]


def test_a_wrapped_line_with_a_seq_already_numbered_is_refused_not_a_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bare push first (numbered 0001), then a wrapped fault at Seq 0001 of the same second,
    # or one with the timestamp alone, which takes --seq as given: judged, either was a
    # duplicate and the run a pass with nothing raised. Now the line is skipped as bad_time,
    # saying what to do, and the exit status says so.
    bare = station_status(GUN, 2).decode()
    own_stamp = orjson.loads(_push(255, "0001"))
    del own_stamp["seq"]
    for wrapped, flags in (
        (_push(255, "0001"), []),
        (orjson.dumps(own_stamp).decode(), ["--seq", "0001"]),
    ):
        frames = _write(tmp_path, [bare, wrapped])
        assert _test(_rules(tmp_path), "--frames", frames, *ENVELOPE, *flags) == 1
        err = capsys.readouterr().err
        assert f"{frames}:2: skipped, not decodable:" in err and "put the wrapped lines" in err
        assert "1 skipped (1 bad_time)" in err, err
        assert main(["decode", "--profile", "tcec", *ENVELOPE, *flags, frames]) == 1
        assert '"bad_time"' in capsys.readouterr().out


def _other_operators_fault(seq: str) -> str:
    """A wrapped fault push of another operator (its own connector) in --timestamp's second."""
    doc = {**orjson.loads(_push(255, seq)), "operator_id": OTHER_OPERATOR}
    doc["data"] = orjson.loads(station_status(OTHER_GUN, 255))
    return orjson.dumps(doc).decode()


OTHER_OPERATOR = "MA0000002"
OTHER_GUN = connector(9)


def test_another_operators_push_may_share_a_numbered_seq(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bare push of --operator (numbered 0001), then another operator's fault at Seq 0001:
    # the gateway takes a (TimeStamp, Seq) once per operator, and the engine's entities are
    # operator:connector, so the two are no duplicate. The clash check was keyed on the Seq
    # alone: the fault was skipped as bad_time (exit 1) and never judged.
    frames = _write(tmp_path, [station_status(GUN, 2).decode(), _other_operators_fault("0001")])
    assert _test(_rules(tmp_path), "--frames", frames, *ENVELOPE) == 0
    err = capsys.readouterr().err
    assert "2 charger frames (2 connector reports in order" in err and "0 skipped" in err, err
    assert "1 raised" in err, err
    assert main(["decode", "--profile", "tcec", *ENVELOPE, frames]) == 0
    out = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["operator_id"], x["pushed_at"]) for x in out] == [
        (OPERATOR, "2026-07-01T10:00:00.000001+08:00"),
        (OTHER_OPERATOR, "2026-07-01T10:00:00.000001+08:00"),
    ]


def test_a_skipped_bare_line_leaves_its_seq_to_a_wrapped_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bare line that is no push (no ConnectorStatusInfo) was numbered 0001 and skipped; the
    # wrapped fault at Seq 0001 after it was then refused as clashing with that push, which
    # was never judged. Now the Seq is released: the fault is judged, the one skip is the bad
    # line's.
    bad = orjson.dumps({"Connector": {"ConnectorID": GUN}}).decode()
    frames = _write(tmp_path, [bad, _push(255, "0001")])
    assert _test(_rules(tmp_path), "--frames", frames, *ENVELOPE) == 1
    err = capsys.readouterr().err
    assert f"{frames}:1: skipped" in err and f"{frames}:2:" not in err, err
    assert "1 raised" in err and "bad_time" not in err, err
    assert main(["decode", "--profile", "tcec", *ENVELOPE, frames]) == 1
    out = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert "error" in out[0] and out[1]["pushed_at"] == "2026-07-01T10:00:00.000001+08:00", out
