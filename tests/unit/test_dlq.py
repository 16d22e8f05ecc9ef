"""The dead-letter logic of ``nev-ingest dlq``: what a letter says, which ones a selection takes,
what goes back to the source topic, and which letters are never replayed."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import NamedTuple

import pytest

from ingest.cli import build_parser, main
from ingest.cli.dlq import _print
from ingest.pipeline.dlq import Letter, Selection, parse_offsets, replay_headers, unreplayable
from ingest.pipeline.wire import dead_letter

pytestmark = pytest.mark.unit

ORIGINAL = [("received_at", b"1764979200000"), ("gateway", b"gw-1"), ("peer", b"10.0.0.1:4000")]


class _Rec(NamedTuple):
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _letter(
    reason: str = "bad_checksum", *, offset: int = 7, time_ms: int = 1000, **kw: object
) -> Letter:
    more = kw.pop("more", ())
    dl = dead_letter(
        key=b"LNEVTEST000000001",
        value=b"##\x02frame",
        headers=ORIGINAL,
        reason=reason,
        detail="BCC 0x12, expected 0x34",
        stage="decode",
        topic=str(kw.pop("topic", "nev.raw")),
        partition=3,
        offset=41,
        timestamp_ms=900,
        more=more,  # type: ignore[arg-type]
    )
    return Letter.of(_Rec(0, offset, time_ms, dl.key, dl.value, dl.headers))


def test_a_letter_reads_the_pipelines_headers() -> None:
    letter = _letter()
    assert (letter.reason, letter.topic, letter.partition, letter.offset) == (
        "bad_checksum",
        "nev.raw",
        3,
        41,
    )
    assert letter.detail == "BCC 0x12, expected 0x34"
    assert letter.size == len(b"##\x02frame")
    assert letter.as_json()["dlq_offset"] == 7


def test_replay_keeps_the_original_headers_in_order_and_drops_the_added_ones() -> None:
    window = [("error.frame_time", b"1"), ("error.window_end", b"2")]
    letter = _letter("time_out_of_window", more=window)
    assert replay_headers(letter.headers) == ORIGINAL


def test_a_cut_value_an_unknown_topic_or_a_missing_source_is_never_replayed() -> None:
    raw = {"nev.raw"}
    assert unreplayable(_letter(), raw) is None
    assert "cut" in str(unreplayable(_letter("too_large"), raw))
    shrunk = _letter(more=[("original.size", b"900000")])
    assert "cut" in str(unreplayable(shrunk, raw))
    assert shrunk.size == 900000
    assert "not a raw topic" in str(unreplayable(_letter(topic="elsewhere"), raw))
    assert "source.topic" in str(unreplayable(_letter(topic=""), raw))


def test_selection_by_reason_topic_time_and_offsets() -> None:
    a, b = _letter("bad_checksum", offset=5, time_ms=1000), _letter("truncated", offset=9)
    assert Selection().takes(a) and Selection().takes(b)
    assert Selection(reasons=frozenset({"truncated"})).takes(b)
    assert not Selection(reasons=frozenset({"truncated"})).takes(a)
    assert not Selection(topics=frozenset({"other"})).takes(a)
    assert Selection(since_ms=1000, until_ms=1001).takes(a)
    assert not Selection(since_ms=1001).takes(a)
    assert not Selection(until_ms=1000).takes(a)
    assert Selection(offsets=parse_offsets("0:4-6")).takes(a)
    assert not Selection(offsets=parse_offsets("0:4-6")).takes(b)
    assert not Selection(offsets=parse_offsets("1:5")).takes(a)


def test_offsets_parse_ranges_and_name_a_bad_item() -> None:
    assert parse_offsets("0:12,0:15-20,1:3") == {0: ((12, 12), (15, 20)), 1: ((3, 3),)}
    for bad in ("12", "0:x", "0:20-15", "-1:3"):
        with pytest.raises(ValueError, match="PARTITION:OFFSET"):
            parse_offsets(bad)


def test_a_bad_flag_is_one_line_before_kafka_is_asked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["dlq", "replay", "--since", "yesterday"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--since" in err and "2h" in err


def test_a_replay_to_a_broker_that_does_not_answer_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1: the producer's start fails before any letter is read.
    monkeypatch.setenv("NEV_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["dlq", "replay"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "replay stopped" in err
    assert "0 letters acknowledged by the broker" in err


def test_a_list_from_a_broker_that_does_not_answer_prints_only_the_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1: no letter is read, so no table header may stand on stdout
    # above the error, as if the table had begun.
    monkeypatch.setenv("NEV_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["dlq", "list"]) == 2
    got = capsys.readouterr()
    assert got.out == ""
    assert len(got.err.splitlines()) == 1 and "check that the broker answers" in got.err


def test_every_command_line_in_the_operations_guide_parses() -> None:
    """docs/operations.md's code lines (``nev-ingest dlq ...`` among them) are real command
    lines: a renamed command or flag fails here, not in an operator's terminal."""
    doc = Path(__file__).parents[2] / "docs" / "operations.md"
    lines = [
        line.split("#")[0].split()
        for line in doc.read_text().splitlines()
        if line.startswith("    nev-ingest ")
    ]
    assert any(argv[1] == "dlq" for argv in lines)
    for argv in lines:
        build_parser(argv[1]).parse_args(argv[1:])


def test_a_table_row_is_one_line_with_where_it_came_from() -> None:
    letter = dataclasses.replace(_letter(), detail="line one\nline two")
    out = io.StringIO()
    _print(letter, "table", out)
    row = out.getvalue()
    assert row.count("\n") == 1
    assert "0:7" in row and "bad_checksum" in row and "nev.raw[3]@41" in row
    assert "line one line two" in row
