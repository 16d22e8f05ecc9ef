"""The record file of ``nev-ingest loadgen --out`` / ``--replay``: what is written is read back
byte for byte (keys, values, kinds, topics, T/CEC headers), a file that is not one is refused
with its line, and the command writes one without a broker; the scale flags' frame times."""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from devtools import loadgen_modes
from devtools.loadgen import Progress, register
from devtools.loadgen_send import write_messages
from devtools.sim.fleet import FleetOptions
from devtools.sim.recordfile import RecordFileError, read_records, read_topics
from devtools.sim.scale import scale_messages
from devtools.sim.world import world_messages

pytestmark = pytest.mark.unit

NAMES = {"vehicle": "v.raw", "charger": "c.raw", "tcec": "t.raw", "battery": "b.raw"}


def test_records_written_are_read_back_the_same(tmp_path: Path) -> None:
    o = FleetOptions(vehicles=20, chargers=10, packs=10, tcec_share=1.0, minutes=3)
    sent = list(itertools.islice(world_messages(o), 400))
    path = tmp_path / "records.txt"
    result = write_messages(
        path, NAMES, iter(sent), max_frames=None, max_seconds=None, progress=Progress(None, None)
    )
    assert result.frames == 400 and result.stopped_by == "done"
    assert read_topics(path) == sorted(NAMES.values())
    back = list(read_records(path))
    assert [(NAMES[m.topic], m.kind, m.key, m.value, m.headers) for m in sent] == [
        (m.topic, m.kind, m.key, m.value, m.headers) for m in back
    ]
    assert any(m.headers for m in back)  # the T/CEC pushes' headers survive
    crlf = tmp_path / "crlf.txt"  # the same file saved with CRLF line ends (an editor, Windows)
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert [(m.key, m.value, m.headers) for m in read_records(crlf)] == [
        (m.key, m.value, m.headers) for m in back
    ]


def test_write_stops_at_max_frames(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    messages = world_messages(FleetOptions(vehicles=5, minutes=2))
    result = write_messages(
        path, NAMES, messages, max_frames=7, max_seconds=None, progress=Progress(None, 7)
    )
    assert result.stopped_by == "max_frames" and len(list(read_records(path))) == 7


def test_a_file_that_is_not_a_record_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("hello\n")
    with pytest.raises(RecordFileError, match="not a loadgen record file"):
        read_topics(path)
    good = tmp_path / "r.txt"
    write_messages(
        good,
        NAMES,
        world_messages(FleetOptions(vehicles=2, minutes=1)),
        max_frames=2,
        max_seconds=None,
        progress=Progress(None, None),
    )
    good.write_text(good.read_text() + "v.raw\trealtime\tzz\t00\t\n")
    with pytest.raises(RecordFileError, match=r"r\.txt:4: .*nev-ingest loadgen --out"):
        list(read_records(good))


def test_loadgen_out_writes_a_scale_run_without_a_broker(tmp_path: Path) -> None:
    path = tmp_path / "scale.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    env["NEV_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # nothing listens: --out needs no broker
    proc = subprocess.run(
        [sys.executable, "-m", "ingest", "loadgen", "--devices", "3000000",
         "--mix", "vehicle=1,charger=1,battery=1", "--max-frames", "600", "--out", str(path)],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    summary = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 600 and summary["stopped_by"] == "max_frames"
    assert "frames/s" in proc.stderr  # the progress line
    records = list(read_records(path))
    assert len(records) == 600
    assert {m.topic for m in records} == {"nev.vehicle.raw", "nev.charger.raw", "nev.battery.raw"}
    assert len({m.key for m in records}) == 300  # round 0: a login and a report per device


def test_loadgen_refuses_a_bad_mix_and_a_missing_replay_file(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ingest", "loadgen", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad_mix = run("--devices", "10", "--mix", "truck=1")
    assert bad_mix.returncode == 2 and "kinds vehicle, charger, battery" in bad_mix.stderr
    missing = run("--replay", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read --replay" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def _three_records(path: Path) -> Path:
    write_messages(
        path,
        NAMES,
        world_messages(FleetOptions(vehicles=2, minutes=1)),
        max_frames=3,
        max_seconds=None,
        progress=Progress(None, None),
    )
    return path


def test_a_bad_line_anywhere_is_found_before_any_record_is_sent(tmp_path: Path) -> None:
    # Nothing listens at the broker's address: a replay that got past its file check would
    # fail on the broker instead, after sending, or trying to send, the records before the
    # bad line. Non-ASCII bytes are such a line too (they used to end in a traceback).
    good = _three_records(tmp_path / "r.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    env["NEV_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
    for tail, where in ((b"v.raw\trealtime\tzz\t00\t\n", ":5:"), (b"\xff\xfe\n", ":5:")):
        bad = tmp_path / "bad.txt"
        bad.write_bytes(good.read_bytes() + tail)
        proc = subprocess.run(
            [sys.executable, "-m", "ingest", "loadgen", "--replay", str(bad)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert f"cannot read --replay {bad}: {bad}{where}" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert loadgen_modes.replay_source(good).total == 3


def test_out_may_not_be_the_replay_file(tmp_path: Path) -> None:
    path = _three_records(tmp_path / "r.txt")
    before = path.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "ingest", "loadgen", "--replay", str(path), "--out",
         str(tmp_path / "." / "r.txt")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "is the --replay file" in proc.stderr
    assert path.read_bytes() == before  # untouched


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["loadgen", *argv])


NOW = 1_782_878_400_000


def test_scale_frame_times_keep_pace_with_the_wall_clock_to_kafka() -> None:
    # A rate below devices / interval: each device reports less often, not late.
    slow = loadgen_modes.scale_options(_args("--devices", "3000000", "--rate", "30000"), NOW)
    assert slow.interval_s == 100.0 and slow.start_ms == NOW
    # No rate: real time, paced at devices / interval (never "as fast as possible", which would
    # date frames ahead of the wall clock and the pipeline would dead-letter them).
    real = _args("--devices", "3000")
    o = loadgen_modes.scale_options(real, NOW)
    assert o.interval_s == 10.0 and loadgen_modes.pace(real, o) == 300.0
    with pytest.raises(ValueError, match="more than once a second"):
        loadgen_modes.scale_options(_args("--devices", "100", "--rate", "1000"), NOW)


def test_a_scale_file_ends_now_so_that_it_replays_without_future_frames() -> None:
    args = _args("--devices", "1000", "--max-frames", "25000", "--out", "f.txt")
    o = loadgen_modes.scale_options(args, NOW)
    assert o.start_ms == NOW - 25 * 10_000  # 25 rounds of 10 s
    last = list(itertools.islice(scale_messages(o), 25_000))[-1]
    # Round 0 holds a login per device too, so the file ends a round or two before now: in
    # the past (replayable at once), not far from now.
    assert NOW - 3 * 10_000 <= last.t_ms <= NOW
