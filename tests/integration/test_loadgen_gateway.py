"""``loadgen --via-gateway`` through a real gateway (``ingest.gateway.Gateway`` on loopback)
into the real broker: one connection per vehicle from several source addresses, or a few
enterprise-platform connections; every answer checked; what reaches Kafka is exactly the good
frames sent, keyed by VIN, from the connections they were sent on."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest

from devtools.loadgen_gateway import GatewayPlan, run_via_gateway
from devtools.loadgen_send import Progress
from devtools.sim.fleet import GOOD_KINDS, Message
from devtools.sim.scale import ScaleOptions, scale_messages
from ingest.config.load import load_settings
from ingest.gateway import Gateway
from ingest.gateway.accounts import set_password
from tests.integration.pipeline_support import read_topic

pytestmark = pytest.mark.integration

SOURCES = ("127.0.0.2", "127.0.0.3")


async def _gateway(kafka: str, topic: str, accounts: Path) -> Gateway:
    settings = load_settings(
        environ={
            "NEV_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "NEV_KAFKA_TOPIC_VEHICLE": topic,
            "NEV_GATEWAY_LISTEN_VEHICLE": "127.0.0.1:0",
            "NEV_GATEWAY_ACCOUNTS_FILE": str(accounts),
        }
    )
    gw = Gateway(settings)
    await gw.start()
    return gw


@pytest.fixture
async def gateway(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> AsyncIterator[tuple[Gateway, str]]:
    topic = unique_topic(3, "lggw")
    accounts = tmp_path / "accounts.toml"
    set_password(accounts, "oem-a", "right-password")
    gw = await _gateway(kafka_bootstrap, topic, accounts)
    try:
        yield gw, topic
    finally:
        await gw.stop()


def _messages(devices: int, bad_ratio: float = 0.0) -> Iterator[Message]:
    o = ScaleOptions(devices=devices, mix=(("vehicle", 1),), interval_s=2, bad_ratio=bad_ratio)
    return itertools.islice(scale_messages(o), devices * 3)


async def test_one_connection_per_vehicle_every_good_frame_on_kafka_once(
    kafka_bootstrap: str, gateway: tuple[Gateway, str]
) -> None:
    gw, topic = gateway
    plan = GatewayPlan(targets=(("127.0.0.1", gw.ports["vehicle"]),), sources=SOURCES)
    msgs = list(_messages(120, bad_ratio=0.02))
    result, stats = await run_via_gateway(
        plan, iter(msgs), devices=120, rate=0, max_frames=None, max_seconds=60,
        progress=Progress(None, None),
    )  # fmt: skip
    assert stats.opened == 120 and stats.closed_by_peer == 0
    assert stats.logins == 120  # every vehicle logged in, answered with success
    # login, the closing heartbeat and the logout of each, all answered with success
    assert stats.answers == 360 and not stats.bad_answers and stats.awaiting == 0
    assert stats.acked == stats.data_sent == sum(m.kind == "realtime" for m in msgs)
    good = [m for m in msgs if m.kind in GOOD_KINDS]
    bad = len(msgs) - len(good)
    assert bad > 0 and result.bad == bad  # corrupted frames went too, and the gateway skipped them
    made = stats.logins_made  # vehicles whose first record was a corrupted login
    records = await read_topic(kafka_bootstrap, topic, expect=len(good) + 240 + made)
    # Kafka holds the good frames once each, plus one heartbeat and one logout per vehicle
    # (and the logins the client made up); no corrupted frame.
    values = Counter(r.value for r in records)
    assert all(values[m.value] == 1 for m in good)
    assert len(records) == len(good) + 240 + made
    for r in records:
        assert r.key == r.value[4:21]  # key = the VIN of the frame
        peer = dict(r.headers)["peer"].decode()
        assert peer.rsplit(":", 1)[0] in SOURCES  # spread over the source addresses
    assert {dict(r.headers)["peer"].decode().rsplit(":", 1)[0] for r in records} == set(SOURCES)


async def test_platforms_forward_many_vehicles_and_bad_credentials_are_refused(
    kafka_bootstrap: str, gateway: tuple[Gateway, str]
) -> None:
    gw, topic = gateway
    target = (("127.0.0.1", gw.ports["vehicle"]),)
    wrong = GatewayPlan(targets=target, platforms=2, credentials=(("oem-a", "wrong"),))
    with pytest.raises(ValueError, match=r"2 of 2 platform logins failed .*refused_0x"):
        await run_via_gateway(
            wrong, iter(()), devices=None, rate=0, max_frames=None, max_seconds=10,
            progress=Progress(None, None),
        )  # fmt: skip
    plan = GatewayPlan(targets=target, platforms=2, credentials=(("oem-a", "right-password"),))
    msgs = list(_messages(80))
    _, stats = await run_via_gateway(
        plan, iter(msgs), devices=80, rate=0, max_frames=None, max_seconds=60,
        progress=Progress(None, None),
    )  # fmt: skip
    assert stats.opened == 2 and stats.bad_answers == Counter()
    assert stats.logins == 2 + 80  # the platforms', then each forwarded vehicle login's answer
    records = await read_topic(kafka_bootstrap, topic, expect=len(msgs) + 2)
    # The vehicles' frames and each platform's closing heartbeat; platform login and logout
    # are not produced (the login carries the password).
    assert len(records) == len(msgs) + 2
    assert {dict(r.headers)["platform"] for r in records} == {b"oem-a"}
    assert len({r.key for r in records}) == 80 + 2
    assert len({dict(r.headers)["connection"] for r in records}) == 2


async def test_the_command_line_runs_through_the_gateway(gateway: tuple[Gateway, str]) -> None:
    gw, _ = gateway
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "ingest", "loadgen", "--devices", "50", "--mix", "vehicle=1"),
        *("--via-gateway", f"127.0.0.1:{gw.ports['vehicle']}", "--max-frames", "150"),
        *("--rate", "0", "--source-addrs", "127.0.0.2-127.0.0.3", "--bad-ratio", "0"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert b"open, " in err and b"logins" in err  # the progress line counts connections
    result = orjson.loads(out.decode().strip().splitlines()[-1])
    assert result["frames"] == 150 and result["stopped_by"] == "max_frames"
    assert result["connections_opened"] == 50 and result["logins"] == 50
    assert result["answers"] == 150 and result["bad_answers"] == {}
    assert result["acked_data_frames"] == result["data_frames_sent"] == 100


async def test_a_mix_the_gateway_cannot_carry_is_one_line() -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "ingest", "loadgen", "--devices", "10"),
        *("--via-gateway", "127.0.0.1:9", "--max-frames", "5"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    (line,) = err.decode().strip().splitlines()
    assert "--via-gateway sends vehicle frames" in line and "--mix vehicle=1" in line


async def test_the_demo_sends_vehicles_through_the_gateway_and_the_rest_to_kafka(
    kafka_bootstrap: str, unique_topic: Callable[..., str], gateway: tuple[Gateway, str]
) -> None:
    from devtools.demo.gateway import gateway_traffic
    from devtools.sim.options import FleetOptions

    gw, vehicle_topic = gateway
    topics = {r: unique_topic(1, f"demo{r}") for r in ("charger", "tcec", "battery")}
    settings = load_settings(
        environ={
            "NEV_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "NEV_KAFKA_TOPIC_VEHICLE": vehicle_topic,
            **{f"NEV_KAFKA_TOPIC_{r.upper()}": t for r, t in topics.items()},
        }
    )
    options = FleetOptions(vehicles=20, chargers=4, packs=4, minutes=1.0, bad_ratio=0.05)
    result = await gateway_traffic(settings, options, gw.ports["vehicle"])
    assert result.runaway_vin is not None and result.by_kind["realtime"] > 0
    # What the demo waits for the service to take: each topic's count is what reached it.
    for topic, expected in result.by_topic.items():
        records = await read_topic(kafka_bootstrap, topic, expect=expected)
        assert len(records) == expected, topic
        if topic == vehicle_topic:  # through the gateway: its headers, one connection per VIN
            conns = {(r.key, dict(r.headers)["connection"]) for r in records}
            assert len(conns) == len({r.key for r in records}) == 20
        else:
            assert all(dict(r.headers)["gateway"].startswith(b"loadgen-") for r in records)
    assert {vehicle_topic, topics["charger"], topics["battery"]} <= set(result.by_topic)
