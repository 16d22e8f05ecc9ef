"""``nev-ingest gateway`` as operators run it: ``passwd`` writes an account from stdin, ``run``
serves a platform session with it, /healthz, /readyz and /metrics answer, and SIGTERM answers
what was in flight and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from devtools.devstack.process import free_port
from devtools.sim import promtext
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import (
    TCEC_OPERATOR,
    close,
    connect,
    drive_traffic,
    http_status,
    login,
    platform_login,
    read_answer,
    reply,
    serving_gateway,
)

pytestmark = pytest.mark.integration

VIN = "LNEVGATE000000042"


async def test_passwd_run_and_sigterm(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    accounts = tmp_path / "accounts.json"
    cmd = [sys.executable, "-m", "ingest", "gateway"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*cmd, "passwd", "oem7", "--accounts", str(accounts)],
        input="s3cret\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == f"added oem7 in {accounts}"
    assert "s3cret" not in accounts.read_text()

    topic = unique_topic(1, "gw")
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "NEV_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "NEV_KAFKA_TOPIC_VEHICLE": topic,
        "NEV_KAFKA_TOPIC_DLQ": unique_topic(1, "dlq"),
        "NEV_GATEWAY_ACCOUNTS_FILE": str(accounts),
        "NEV_LOG_FORMAT": "text",
    }
    log = (tmp_path / "gateway.log").open("wb")
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [*cmd, "run", "--listen", f"127.0.0.1:{port}", "--metrics-port", str(metrics_port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        async def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            return await asyncio.to_thread(http_status, metrics_port, "/readyz") == 200

        await ps.until(ready, timeout_s=60, what="the gateway ready")
        assert await asyncio.to_thread(http_status, metrics_port, "/healthz") == 200
        reader, writer = await connect(port)
        hello = platform_login("oem7", "s3cret")
        writer.write(hello)
        assert await read_answer(reader) == reply(hello, 0x01)
        samples = await asyncio.to_thread(promtext.scrape, metrics_port)
        ok = {"kind": "vehicle", "login": "platform_login", "result": "ok"}
        assert promtext.total(samples, "nev_gateway_logins_total", **ok) == 1
        writer.write(login(VIN))
        proc.send_signal(signal.SIGTERM)  # the login may still be in flight: it is answered
        assert await read_answer(reader) == reply(login(VIN), 0x01)
        assert await reader.read() == b""
        await close(writer)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
    records = await ps.read_topic(kafka_bootstrap, topic, expect=1)
    assert [(r.key, dict(r.headers)["platform"]) for r in records] == [(VIN.encode(), b"oem7")]


async def test_run_serves_the_tcec_receiver_beside_the_tcp_listeners(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    """With ``tcec.listen`` set, the command starts the T/CEC 102 receiver (its own producer):
    a token, then a push, answered Ret 0 and on ``kafka.topic_tcec``; its metrics on the
    gateway's /metrics; SIGTERM still exits 0 (``serving_gateway`` checks on leaving)."""
    tcec_topic = unique_topic(1, "tcec")
    async with serving_gateway(
        kafka_bootstrap,
        vehicle=unique_topic(1, "gw"),
        dlq=unique_topic(1, "dlq"),
        tcec=tcec_topic,
        log=tmp_path / "gateway.log",
    ) as gw:
        await drive_traffic(gw, VIN)
        samples = await asyncio.to_thread(promtext.scrape, gw.metrics_port)
        ok = {"interface": "notification_stationStatus", "ret": "0"}
        assert promtext.total(samples, "nev_gateway_tcec_requests_total", **ok) == 1
    records = await ps.read_topic(kafka_bootstrap, tcec_topic, expect=1)
    connector = f"{TCEC_OPERATOR.operator_id}P000000101"
    assert [(r.key, orjson.loads(r.value)) for r in records] == [
        (
            f"{TCEC_OPERATOR.operator_id}:{connector}".encode(),
            {"ConnectorStatusInfo": {"ConnectorID": connector, "Status": 3}},
        )
    ]
