"""``nev-ingest loadgen`` against the real broker: key = the device identity, value = the raw
frame (a T/CEC push's JSON), gateway headers, each kind on its topic; bounded by --max-frames
and --max-seconds; last line one JSON object."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from devtools.loadgen import run_loadgen
from devtools.settings import load_dev_settings
from devtools.sim.fleet import FleetOptions
from devtools.sim.recordfile import read_records
from devtools.sim.world import world_messages
from ingest.decoders.battery import decode_pack_rows
from ingest.decoders.charger import decode_charger_rows
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from ingest.pipeline import wire
from tests.integration.pipeline_support import read_topic

pytestmark = pytest.mark.integration

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "vehicle": decode_rows,
    "charger": decode_charger_rows,
    "battery": decode_pack_rows,
}


def _loadgen(kafka: str, *args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    env["NEV_KAFKA_BOOTSTRAP_SERVERS"] = kafka
    proc = subprocess.run(
        [sys.executable, "-m", "ingest", "loadgen", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert "loadgen:" in proc.stderr  # the progress line
    summary: dict[str, object] = orjson.loads(last)
    return summary


async def test_loadgen_puts_gateway_records_on_kafka(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(3, "lg")
    summary = _loadgen(
        kafka_bootstrap, "--vehicles", "30", "--minutes", "10", "--max-frames", "500",
        "--topic", topic,
    )  # fmt: skip
    assert summary["frames"] == 500 and summary["stopped_by"] == "max_frames"
    records = await read_topic(kafka_bootstrap, topic, expect=500)
    assert len(records) == 500
    decoded = 0
    for r in records:
        names = [h[0] for h in r.headers]
        assert names == [wire.RECEIVED_AT, wire.GATEWAY, wire.PEER]
        assert wire.received_at_ms(r.headers, 0) >= r.timestamp - 60_000
        try:
            rows = decode_rows(r.value)
        except FrameError:
            continue  # a corrupted frame, on purpose: the DLQ tests follow those
        assert rows.vin == r.key.decode()
        decoded += 1
    assert decoded >= 0.95 * len(records)


# The command lines are spelled out as an operator types them (``duplicates`` pairs the two).
async def test_loadgen_stops_after_max_seconds(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(1, "lg")
    summary = _loadgen(
        kafka_bootstrap, "--vehicles", "200", "--minutes", "10", "--rate", "300",
        "--max-seconds", "1.5", "--topic", topic,
    )  # fmt: skip
    assert summary["stopped_by"] == "max_seconds"
    # What the same fleet sends when nothing stops it (~12,000 records; 300/s for 1.5 s is
    # ~450): the clock stopped it early. No bound on how many went out nor on how long it took:
    # both depend on the machine.
    whole = sum(1 for _ in world_messages(FleetOptions(vehicles=200, minutes=10)))
    assert 0 < int(str(summary["frames"])) < whole


async def test_loadgen_of_three_kinds_puts_each_on_its_topic(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # In process, to name a T/CEC topic of its own before kafka.topic_tcec exists everywhere.
    topics = {role: unique_topic(2, f"lg-{role}") for role in ("vehicle", "charger", "tcec")}
    topics["battery"] = unique_topic(2, "lg-battery")
    settings = load_dev_settings(overrides={"kafka.bootstrap_servers": kafka_bootstrap})
    options = FleetOptions(
        vehicles=20, chargers=6, packs=20, minutes=3, tcec_share=0.5, end_ms=int(time.time() * 1000)
    )
    result = await run_loadgen(settings, options, topics=topics, progress_stream=None)
    assert result.stopped_by == "done"
    assert set(result.by_topic) == set(topics.values())
    for role, name in topics.items():
        records = await read_topic(kafka_bootstrap, name, expect=result.by_topic[name])
        assert len(records) == result.by_topic[name] > 0
        for r in records:
            names = [h[0] for h in r.headers]
            assert names[:3] == [wire.RECEIVED_AT, wire.GATEWAY, wire.PEER]
            if role == "tcec":
                assert names[3:] == [*wire.TCEC_HEADERS, wire.TCEC_SEQ]  # as the gateway
                h = {k: v.decode() for k, v in r.headers}
                assert r.key.decode().split(":")[0] == h["tcec_operator_id"]
                continue
            try:
                rows = DECODERS[role](r.value)
            except FrameError:
                continue  # corrupted on purpose
            identity = {"vehicle": "vin", "charger": "charger_id", "battery": "pack_code"}[role]
            assert r.key.decode() == getattr(rows, identity)


async def test_loadgen_cli_takes_chargers_and_packs(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    vehicle, charger, battery = (unique_topic(1, f"lg-{k}") for k in ("v", "c", "b"))
    summary = _loadgen(
        kafka_bootstrap, "--vehicles", "5", "--chargers", "3", "--packs", "10",
        "--tcec-share", "0", "--minutes", "2", "--topic", vehicle,
        "--set", f"kafka.topic_charger={charger}", "--set", f"kafka.topic_battery={battery}",
    )  # fmt: skip
    by_topic = summary["by_topic"]
    assert isinstance(by_topic, dict)
    assert set(by_topic) == {vehicle, charger, battery}
    assert summary["frames"] == sum(by_topic.values())


async def test_loadgen_at_scale_writes_a_file_and_replays_it_to_kafka(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    vehicle, charger = unique_topic(2, "lg-sv"), unique_topic(2, "lg-sc")
    topics = ("--topic", vehicle, "--set", f"kafka.topic_charger={charger}")
    # Straight to Kafka: a million devices, each kind on its topic, key = the identity.
    summary = _loadgen(
        kafka_bootstrap, "--devices", "1000000", "--mix", "vehicle=1,charger=1",
        "--max-frames", "400", *topics,
    )  # fmt: skip
    assert summary["frames"] == 400 and summary["by_topic"] == {vehicle: 200, charger: 200}
    for name, role in ((vehicle, "vehicle"), (charger, "charger")):
        records = await read_topic(kafka_bootstrap, name, expect=200)
        assert len(records) == 200
        ident = {"vehicle": "vin", "charger": "charger_id"}[role]
        good = 0
        for r in records:
            try:
                rows = DECODERS[role](r.value)
            except FrameError:
                continue  # corrupted on purpose
            assert r.key.decode() == getattr(rows, ident)
            good += 1
        assert good >= 190
    # To a file, then the file to Kafka: the same bytes, fresh gateway headers.
    path = tmp_path / "records.txt"
    written = _loadgen(
        kafka_bootstrap, "--devices", "500", "--mix", "vehicle=1", "--max-frames", "300",
        "--seed", "9", "--out", str(path), "--topic", unique_topic(1, "lg-unused"),
    )  # fmt: skip
    replay_topic = unique_topic(2, "lg-replay")
    path.write_text(path.read_text().replace(str(written["topic"]), replay_topic))
    replayed = _loadgen(kafka_bootstrap, "--replay", str(path), "--rate", "2000")
    assert replayed["frames"] == 300 and replayed["by_kind"] == written["by_kind"]
    records = await read_topic(kafka_bootstrap, replay_topic, expect=300)
    sent = [(m.key, m.value) for m in read_records(path)]
    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    assert all(
        [h[0] for h in r.headers][:3] == [wire.RECEIVED_AT, wire.GATEWAY, wire.PEER]
        for r in records
    )
