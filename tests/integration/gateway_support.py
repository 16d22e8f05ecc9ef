"""Helpers of the gateway's integration tests: an in-process ``Gateway`` with a real aiokafka
producer on a real broker, real TCP clients on loopback, and GB/T 32960 frames built with the
simulators' envelope (an independent writer of the bytes the gateway must answer with). Also
``nev-ingest gateway run`` as a process (``serving_gateway``, with the T/CEC receiver) and a
little traffic of every sort its metrics count (``drive_traffic``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from contract import CHINA_TZ
from devtools.devstack.process import free_port
from devtools.sim.envelope import frame
from ingest.config import KafkaSettings, Settings
from ingest.config.gateway_settings import GatewaySettings
from ingest.decoders.commands.session import PlatformLogin, encode_platform_login
from ingest.gateway import Gateway, GatewayMetrics
from ingest.gateway.tcec.envelope import OperatorSecrets, decrypt, request
from tests.integration.pipeline_support import until

T = bytes((26, 12, 6, 15, 30, 45))  # the frames' collection time
ANSWER_TIMEOUT_S = 30.0  # a bound on a hang, not a speed assertion


# The dead-letter topic of the tests on the shared broker (created by their autouse fixture).
SHARED_DLQ = "gateway-test-dlq"


def settings_for(kafka: str, topic: str, dlq: str = SHARED_DLQ, **gateway: Any) -> Settings:
    base = {"listen_vehicle": "127.0.0.1:0", "gateway_id": "gw-test", **gateway}
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka, topic_vehicle=topic, topic_dlq=dlq),
        gateway=dataclasses.replace(GatewaySettings(), **base),
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Gateway]:
    gw = Gateway(settings, metrics=GatewayMetrics())
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def login(vin: str, edition: int = 2016, seq: int = 1) -> bytes:
    if edition == 2016:
        body = T + seq.to_bytes(2, "big") + b"89860000000000000001" + b"\x01\x00"
    else:
        body = T + seq.to_bytes(2, "big") + b"89860000000000000001" + b"\x00"
    return frame(edition, 0x01, vin, body)


def realtime(vin: str, edition: int = 2016, n: int = 0) -> bytes:
    # a custom information block (0x80..0xFE carry a WORD length): any payload size
    return frame(edition, 0x02, vin, T + b"\xc0" + (4).to_bytes(2, "big") + n.to_bytes(4, "big"))


def platform_login(user: str, password: str, edition: int = 2016) -> bytes:
    body = T + encode_platform_login(PlatformLogin(1, user, password, 0x01))
    return frame(edition, 0x05, "PLATFORM01", body)


def reply(request: bytes, flag: int, unit: bytes | None = None) -> bytes:
    """The answer the standard calls for, built independently of ingest.gateway.answers."""
    edition = 2016 if request[:2] == b"##" else 2025
    ident = request[4:21].rstrip(b"\0").decode()
    return frame(edition, request[2], ident, T if unit is None else unit, response=flag)


async def connect(
    port: int, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=tls)


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One whole answer frame (header, N, unit, BCC)."""
    head = await asyncio.wait_for(reader.readexactly(24), ANSWER_TIMEOUT_S)
    n = head[22] << 8 | head[23]
    return head + await asyncio.wait_for(reader.readexactly(n + 1), ANSWER_TIMEOUT_S)


def sample(gw: Gateway, name: str, **labels: str) -> float:
    value = gw.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def close(*writers: asyncio.StreamWriter) -> None:
    """Close client connections (the gateway may have closed them already)."""
    for writer in writers:
        writer.close()
        # closed by the gateway first: what some tests assert
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


# -- ``nev-ingest gateway run`` as operators run it ------------------------------------------

# The one T/CEC operator of ``serving_gateway``'s receiver (secrets of the tests only).
TCEC_OPERATOR = OperatorSecrets(
    "MA01H3BQ2", "opsecret", "1234567890abcdef", "abcdef1234567890", "sig"
)


def http_status(port: int, path: str) -> int:
    """The HTTP status of GET ``path`` on loopback (0 while nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


@dataclasses.dataclass
class GatewayProcess:
    """A running ``nev-ingest gateway run``: its vehicle listener, metrics and T/CEC ports."""

    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    metrics_port: int
    tcec_port: int


def _start(argv: list[str], environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, env=environ, stdout=out, stderr=subprocess.STDOUT)


# ``python -c`` of a gateway whose open-file limit (soft and hard) is argv[1]: as under
# ``ulimit -n N``, a limit the process cannot raise.
_WITH_NOFILE = (
    "import resource, runpy, sys; n = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); "
    "runpy.run_module('ingest', run_name='__main__')"
)


@asynccontextmanager
async def serving_gateway(
    kafka: str,
    *,
    vehicle: str,
    dlq: str,
    tcec: str,
    log: Path,
    env: dict[str, str] | None = None,
    nofile: int | None = None,
) -> AsyncIterator[GatewayProcess]:
    """A ready ``nev-ingest gateway run`` (/readyz 200) producing to the given topics, with the
    T/CEC receiver for ``TCEC_OPERATOR`` and no platform accounts; on leaving SIGTERM, and the
    exit code must be 0. ``env``: more ``NEV_*`` settings; ``nofile``: its open-file limit."""
    secrets = {
        TCEC_OPERATOR.operator_id: {
            "OperatorSecret": TCEC_OPERATOR.operator_secret,
            "DataSecret": TCEC_OPERATOR.data_secret,
            "DataSecretIV": TCEC_OPERATOR.data_secret_iv,
            "SigSecret": TCEC_OPERATOR.sig_secret,
        }
    }
    port, metrics_port, tcec_port = free_port(), free_port(), free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    environ.update(
        NEV_KAFKA_BOOTSTRAP_SERVERS=kafka,
        NEV_KAFKA_TOPIC_VEHICLE=vehicle,
        NEV_KAFKA_TOPIC_DLQ=dlq,
        NEV_KAFKA_TOPIC_TCEC=tcec,
        NEV_TCEC_LISTEN=f"127.0.0.1:{tcec_port}",
        NEV_TCEC_OPERATOR_SECRETS=orjson.dumps(secrets).decode(),
        NEV_TCEC_TOKEN_KEY="a-token-key-for-the-test",
        NEV_LOG_FORMAT="text",
    )
    environ.update(env or {})
    launch = ["-m", "ingest"] if nofile is None else ["-c", _WITH_NOFILE, str(nofile)]
    argv = [sys.executable, *launch, "gateway", "run", "--listen", f"127.0.0.1:{port}"]
    proc = await asyncio.to_thread(
        _start, [*argv, "--metrics-port", str(metrics_port)], environ, log
    )
    gw = GatewayProcess(proc, log, port, metrics_port, tcec_port)
    try:

        async def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(await asyncio.to_thread(log.read_text))
            return await asyncio.to_thread(http_status, metrics_port, "/readyz") == 200

        await until(ready, timeout_s=60, what="the gateway ready")
        yield gw
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = await asyncio.to_thread(proc.wait, 30)
    if code != 0:
        raise AssertionError((await asyncio.to_thread(log.read_text))[-4000:])


async def drive_traffic(gw: GatewayProcess, vin: str) -> None:
    """Traffic of every sort the gateway's metrics count, each step answered: a frame before
    the login (refused ``not_logged_in``), a vehicle login, real-time frames and a heartbeat
    (produced), a platform login refused (no accounts), then a T/CEC token and a push."""
    import aiohttp

    reader, writer = await connect(gw.port)
    early = realtime(vin, 2016, 0)
    writer.write(early)
    assert await read_answer(reader) == reply(early, 0x02)
    hello = login(vin)
    writer.write(hello)
    assert await read_answer(reader) == reply(hello, 0x01)
    beat = frame(2016, 0x07, vin, b"")
    writer.write(b"".join(realtime(vin, 2016, n) for n in (1, 2, 3)) + beat)
    assert await read_answer(reader) == reply(beat, 0x01, b"")  # after the frames before it
    await close(writer)
    reader, writer = await connect(gw.port)
    guess = platform_login("nobody", "guess")
    writer.write(guess)
    assert await read_answer(reader) == reply(guess, 0x02)
    await close(writer)

    op = TCEC_OPERATOR
    base = f"http://127.0.0.1:{gw.tcec_port}/evcs/v1.0"
    stamp = datetime.now(CHINA_TZ).strftime("%Y%m%d%H%M%S")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def post(interface: str, data: dict[str, Any], seq: str, **h: str) -> Any:
            body = request(op, orjson.dumps(data), stamp, seq)
            async with session.post(f"{base}/{interface}", data=body, headers=h) as resp:
                doc = orjson.loads(await resp.read())
            return doc["Ret"], orjson.loads(decrypt(op, doc["Data"])) if doc["Data"] else None

        cred = {"OperatorID": op.operator_id, "OperatorSecret": op.operator_secret}
        ret, data = await post("query_token", cred, "0001")
        assert ret == 0 and data["SuccStat"] == 0, data
        push = {"ConnectorStatusInfo": {"ConnectorID": f"{op.operator_id}P000000101", "Status": 3}}
        auth = {"Authorization": f"Bearer {data['AccessToken']}"}
        ret, _ = await post("notification_stationStatus", push, "0002", **auth)
        assert ret == 0
