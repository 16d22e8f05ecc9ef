"""``nev-ingest loadgen`` against the real broker: key = VIN, value = the raw frame, gateway
headers; bounded by --max-frames and --max-seconds; last line one JSON object."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import orjson
import pytest

from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from ingest.pipeline import wire
from tests.integration.pipeline_support import read_topic

pytestmark = pytest.mark.integration


def _loadgen(kafka: str, *args: str) -> tuple[dict[str, object], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    env["NEV_KAFKA_BOOTSTRAP_SERVERS"] = kafka
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ingest", "loadgen", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    took = time.monotonic() - started
    last = proc.stdout.strip().splitlines()[-1]
    assert "loadgen:" in proc.stderr  # the progress line
    return orjson.loads(last), took


async def test_loadgen_puts_gateway_records_on_kafka(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(3, "lg")
    summary, _ = _loadgen(
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
    summary, took = _loadgen(
        kafka_bootstrap, "--vehicles", "200", "--minutes", "10", "--rate", "300",
        "--max-seconds", "1.5", "--topic", topic,
    )  # fmt: skip
    assert summary["stopped_by"] == "max_seconds"
    assert 200 <= int(str(summary["frames"])) <= 700  # ~300 frames/s for 1.5 s
    assert took < 60
