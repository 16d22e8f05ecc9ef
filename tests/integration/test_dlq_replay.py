"""``nev-ingest dlq list|replay`` on the real stack: frames dead-lettered as
``time_out_of_window`` by a too-tight ``pipeline.frame_max_future_s`` are listed by reason, a dry
run sends nothing, and after the setting is fixed two replays of the same letters store their
rows once (the pipeline skips rows it already holds), with nothing dead-lettered again."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter

import orjson
import pytest

from devtools.sim.fleet import FleetOptions, Message, SimVehicle, fleet_messages
from ingest.config.load import load_settings
from ingest.decoders import encode_frame
from ingest.pipeline.dlq import Selection, read_letters, replay
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def _ahead(vin: str, t_ms: int, seed: int) -> Message:
    v = SimVehicle(vin, random.Random(seed), 2016 if seed % 2 else 2025)
    v.step(10.0)
    return Message(t_ms, vin.encode(), encode_frame(v.frame(t_ms)), "realtime")


def _into_a_closed_pipe(env: PipelineEnv, *args: str) -> subprocess.CompletedProcess[str]:
    """``nev-ingest dlq ARGS`` writing into a pipe nobody reads (as ``| head`` once it quit)."""
    read, write = os.pipe()
    os.close(read)
    try:
        # stdout buffered, as in a shell (the test runner's PYTHONUNBUFFERED is not the user's)
        environ = {k: v for k, v in env.environ().items() if k != "PYTHONUNBUFFERED"}
        return subprocess.run(
            [sys.executable, "-m", "ingest", "dlq", *args],
            env=environ, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
            check=False,
        )  # fmt: skip
    finally:
        os.close(write)


def _cli(env: PipelineEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", "dlq", *args],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_dead_letters_listed_then_replayed_twice_are_stored_once(env: PipelineEnv) -> None:
    now_ms = time.time_ns() // 1_000_000_000 * 1000
    good = list(
        fleet_messages(
            FleetOptions(vehicles=10, minutes=1, bad_ratio=0, gap_ratio=0, runaway=False,
                         end_ms=now_ms)
        )
    )  # fmt: skip
    # Two hours ahead of their receive time: a device on the wrong time zone, say.
    ahead = [_ahead(f"LNEVAHEAD0000{i:04d}", now_ms + 2 * HOUR_MS + i * 1000, i) for i in range(6)]
    expected = ps.Expected.of([*good, *ahead])

    async with ps.serving(env, "tight", NEV_PIPELINE_FRAME_MAX_FUTURE_S="60"):
        await ps.produce_and_store(env, [*good, *ahead])
        dead = await ps.read_topic(env.kafka, env.dlq, expect=len(ahead))
    assert len(dead) == len(ahead)
    without_ahead = Counter({k: n for k, n in expected.rows.items() if "AHEAD" not in k[0]})
    assert await ps.stored_rows(env.dsn) == without_ahead

    listed = _cli(env, "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    lines = [orjson.loads(line) for line in listed.stdout.splitlines()]
    letters, counts = lines[:-1], lines[-1]
    assert counts == {"counts": {"time_out_of_window": len(ahead)}}
    assert {(x["topic"], x["reason"]) for x in letters} == {(env.topic, "time_out_of_window")}
    assert sorted(x["size"] for x in letters) == sorted(len(m.value) for m in ahead)
    table = _cli(env, "list", "--reason", "bad_checksum")
    assert table.returncode == 0 and table.stdout.splitlines()[-1] == "0 dead letters"

    # --since reads from the time index: an hour ago takes all, a time ahead none (and ends)
    recent = _cli(env, "list", "--since", "1h", "--counts", "--format", "json")
    assert orjson.loads(recent.stdout) == {"counts": {"time_out_of_window": len(ahead)}}
    later = _cli(env, "list", "--since", "2099-01-01T00:00:00", "--counts")
    assert later.returncode == 0 and later.stdout.strip() == "0 dead letters", later.stderr
    # before 1970 (China time) and longer ago than 1970: from the beginning, not a traceback
    for since in ("1970-01-01", "99999999d"):
        early = _cli(env, "list", "--since", since, "--counts", "--format", "json")
        assert orjson.loads(early.stdout) == {"counts": {"time_out_of_window": len(ahead)}}, (
            early.stderr
        )
    first = min(letters, key=lambda x: (x["dlq_partition"], x["dlq_offset"]))
    where = f"{first['dlq_partition']}:{first['dlq_offset']}"
    one = _cli(env, "replay", "--offsets", where, "--dry-run")
    assert one.stdout.strip() == "would replay 1 dead letter: time_out_of_window 1", one.stderr
    typo = _cli(env, "replay", "--reason", "time_out_of_windw", "--dry-run")
    assert typo.returncode == 0 and typo.stdout.strip() == "would replay 0 dead letters"
    assert "nothing matched the selection" in typo.stderr
    # a reader that goes away (| head) ends the listing quietly
    gone = _into_a_closed_pipe(env, "list")
    assert gone.returncode == 0 and "Traceback" not in gone.stderr, gone.stderr
    missing = _cli(env, "list", "--set", "kafka.topic_dlq=no.such.topic")
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert "no.such.topic" in missing.stderr and "kafka.topic_dlq" in missing.stderr

    # the progress callback of long replays, every letter here (a dry run: nothing is sent)
    kafka = load_settings(environ=env.environ()).kafka
    seen: list[int] = []
    await replay(
        kafka, read_letters(kafka, env.dlq), Selection(), {env.topic}, dry_run=True,
        progress=seen.append, progress_every_s=0,
    )  # fmt: skip
    assert seen == list(range(1, len(ahead) + 1))

    before = await ps.end_offsets(env.kafka, env.topic)
    dry = _cli(env, "replay", "--reason", "time_out_of_window", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == f"would replay {len(ahead)} dead letters: time_out_of_window 6"
    assert await ps.end_offsets(env.kafka, env.topic) == before  # a dry run sends nothing

    # The fix: a window wide enough for these devices; then the same letters twice.
    async with ps.serving(env, "fixed", NEV_PIPELINE_FRAME_MAX_FUTURE_S="10800"):
        for _ in range(2):
            done = _cli(env, "replay", "--reason", "time_out_of_window")
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith(f"replayed {len(ahead)} dead letters")
        after = await ps.end_offsets(env.kafka, env.topic)
        assert sum(after.values()) - sum(before.values()) == 2 * len(ahead)
        await ps.until(lambda: ps.caught_up(env), timeout_s=90, what="the replays stored")
        assert await ps.stored_rows(env.dsn) == expected.rows  # every frame once
        # nothing was dead-lettered again: the replayed records carry no error headers
        again = await ps.read_topic(env.kafka, env.dlq, expect=len(ahead), timeout_s=5)
        assert len(again) == len(ahead)
        replayed = await ps.read_topic(env.kafka, env.topic, expect=sum(after.values()))
        extra = [r for r in replayed if r.key in {m.key for m in ahead}]
        assert len(extra) == 3 * len(ahead)  # the original and two replays of each
        for r in extra:
            names = [k for k, _ in r.headers]
            assert not any(n.startswith(("error.", "source.")) for n in names)
            assert "received_at" in names  # the original receive time goes back with it
