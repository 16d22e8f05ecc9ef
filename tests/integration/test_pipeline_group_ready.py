"""/readyz requires every worker to be in the consumer group: a worker whose brokers answer but
whom the group has not assigned yet (a rebalance held up by a member that stopped responding)
is not ready, and says so; once assigned it is.

Before, the Kafka gauge alone was read, which is 1 as soon as the brokers answer a metadata
request: the service was "ready" while no worker consumed anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

NOT_IN_GROUP = ["not in the consumer group yet"]

# A member of the group that joins, writes its marker, and polls until SIGTERM. Stopped with
# SIGSTOP it stays a member that does not answer: a rebalance waits for it until its session
# (60 s) times out.
_MEMBER = """
import asyncio, signal, sys
from pathlib import Path
from aiokafka import AIOKafkaConsumer

async def main(kafka: str, group: str, topic: str, marker: str) -> None:
    c = AIOKafkaConsumer(topic, bootstrap_servers=kafka, group_id=group,
                         enable_auto_commit=False, session_timeout_ms=60000)
    await c.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not c.assignment():
        await c.getmany(timeout_ms=200)
    Path(marker).write_text("joined")
    while not stop.is_set():
        await c.getmany(timeout_ms=200)
    await c.stop()

asyncio.run(main(*sys.argv[1:]))
"""


def _start_member(env: PipelineEnv, marker: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _MEMBER, env.kafka, env.group, env.topic, str(marker)]
    )


async def test_a_worker_not_in_the_group_is_not_ready_until_assigned(env: PipelineEnv) -> None:
    marker = env.tmp / "member-joined"
    member = _start_member(env, marker)
    svc: ps.Service | None = None
    code = None
    try:

        async def joined() -> bool:
            assert member.poll() is None, "the other member exited"
            return marker.exists()

        await ps.until(joined, timeout_s=60, what="the other member to join the group")
        os.kill(member.pid, signal.SIGSTOP)  # a member that no longer answers
        svc = ps.Service(env, "group-ready")
        service = svc

        last: list[dict[str, Any]] = [{}]

        async def waiting_for_the_group() -> dict[str, Any]:
            body = last[0] = service.readyz_body()
            workers = body.get("workers") or []
            if workers and all(w["problems"] == NOT_IN_GROUP for w in workers):
                return body
            return {}

        try:
            body = await ps.until(
                waiting_for_the_group, timeout_s=40, what="a worker outside the group to be unready"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; /readyz said {last[0]}") from None
        assert body["ready"] is False, body
        os.kill(member.pid, signal.SIGCONT)  # it rejoins: the rebalance completes
        await ps.until(lambda: ps.ready(service), timeout_s=60, what="ready once assigned")
    finally:
        os.kill(member.pid, signal.SIGCONT)
        member.terminate()
        member.wait(30)
        if svc is not None:
            code = svc.stop()
    assert svc is not None and code == 0, svc.tail() if svc else None
