"""``nev-ingest gateway`` as operators run it: ``passwd`` writes an account from stdin, ``run``
serves a platform session with it, /healthz, /readyz and /metrics answer, and SIGTERM answers
what was in flight and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contract import CHINA_TZ
from devtools.devstack.process import free_port
from devtools.sim import promtext
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import (
    close,
    connect,
    login,
    platform_login,
    read_answer,
    reply,
)

pytestmark = pytest.mark.integration

VIN = "LNEVGATE000000042"


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


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
            return await asyncio.to_thread(_status, metrics_port, "/readyz") == 200

        await ps.until(ready, timeout_s=60, what="the gateway ready")
        assert await asyncio.to_thread(_status, metrics_port, "/healthz") == 200
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
    gateway's /metrics; SIGTERM still exits 0."""
    import aiohttp
    import orjson

    from ingest.gateway.tcec.envelope import OperatorSecrets, decrypt, request

    op = OperatorSecrets("MA01H3BQ2", "opsecret", "1234567890abcdef", "abcdef1234567890", "sig")
    secrets = {
        op.operator_id: {
            "OperatorSecret": op.operator_secret,
            "DataSecret": op.data_secret,
            "DataSecretIV": op.data_secret_iv,
            "SigSecret": op.sig_secret,
        }
    }
    tcec_topic = unique_topic(1, "tcec")
    http_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "NEV_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "NEV_KAFKA_TOPIC_VEHICLE": unique_topic(1, "gw"),
        "NEV_KAFKA_TOPIC_TCEC": tcec_topic,
        "NEV_KAFKA_TOPIC_DLQ": unique_topic(1, "dlq"),
        "NEV_TCEC_LISTEN": f"127.0.0.1:{http_port}",
        "NEV_TCEC_OPERATOR_SECRETS": orjson.dumps(secrets).decode(),
        "NEV_TCEC_TOKEN_KEY": "a-token-key-for-the-test",
        "NEV_LOG_FORMAT": "text",
    }
    log = (tmp_path / "gateway.log").open("wb")
    cmd = [sys.executable, "-m", "ingest", "gateway", "run"]
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [*cmd, "--listen", f"127.0.0.1:{free_port()}", "--metrics-port", str(metrics_port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        async def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            return await asyncio.to_thread(_status, metrics_port, "/readyz") == 200

        await ps.until(ready, timeout_s=60, what="the gateway ready")
        base = f"http://127.0.0.1:{http_port}/evcs/v1.0"
        stamp = datetime.now(CHINA_TZ).strftime("%Y%m%d%H%M%S")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def post(interface: str, data: dict[str, Any], seq: str, **h: str) -> Any:
                body = request(op, orjson.dumps(data), stamp, seq)
                async with session.post(f"{base}/{interface}", data=body, headers=h) as resp:
                    doc = orjson.loads(await resp.read())
                return doc["Ret"], orjson.loads(decrypt(op, doc["Data"])) if doc["Data"] else None

            cred = {"OperatorID": op.operator_id, "OperatorSecret": op.operator_secret}
            ret, data = await post("query_token", cred, "0001")
            assert ret == 0 and data["SuccStat"] == 0
            push = {"ConnectorStatusInfo": {"ConnectorID": "MA01H3BQ2P000000101", "Status": 3}}
            auth = {"Authorization": f"Bearer {data['AccessToken']}"}
            ret, _ = await post("notification_stationStatus", push, "0002", **auth)
            assert ret == 0
        samples = await asyncio.to_thread(promtext.scrape, metrics_port)
        ok = {"interface": "notification_stationStatus", "ret": "0"}
        assert promtext.total(samples, "nev_gateway_tcec_requests_total", **ok) == 1
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
    records = await ps.read_topic(kafka_bootstrap, tcec_topic, expect=1)
    assert [(r.key, orjson.loads(r.value)) for r in records] == [
        (b"MA01H3BQ2:MA01H3BQ2P000000101", push)
    ]
