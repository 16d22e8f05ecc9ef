"""``nev-ingest demo --via-gateway``: the demo with the GB/T 32960 gateway in the path.

The demo starts ``nev-ingest gateway`` in the background beside the service (its log and pid
in the demo's directory; ``demo --stop`` stops both) and sends the fleet's vehicle frames over
TCP through it, one connection per vehicle (``loadgen --via-gateway``'s client: login,
frames, logout, every answer checked); chargers' and packs' records and T/CEC pushes go
straight to Kafka as in the default demo (the gateway's charger and pack listeners are off).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devtools.demo.service import demo_dir
from devtools.loadgen_send import LoadResult, Progress
from devtools.settings import DevSettings

__all__ = ["gateway_env", "gateway_traffic", "start_gateway", "stop_gateway"]

READY_TIMEOUT_S = 60.0


def gateway_env(env: dict[str, str]) -> dict[str, str]:
    """The demo gateway's environment: the service's, and no per-address connection share.
    Every simulated vehicle connects from 127.0.0.1, one connection each (3,000 by default, up
    to 100,000), so ``gateway.max_connections_per_peer`` (1,000) refused all but the first
    thousand. The demo's gateway listens on loopback only; the setting's maximum is above any
    ``max_connections``, which turns the share off (docs/gateway.md)."""
    return {**env, "NEV_GATEWAY_MAX_CONNECTIONS_PER_PEER": "10000000"}


def start_gateway(env: dict[str, str], directory: Path) -> tuple[int, int]:
    """``nev-ingest gateway run`` on a free loopback port, in its own session; its pid and
    port once /readyz answers (UserError with its log's tail if it does not)."""
    from devtools.devstack.process import free_port
    from ingest.errors import UserError

    port, metrics_port = free_port(), free_port()
    log = (directory / "gateway.log").open("ab")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "ingest", "gateway", "run"),
            *("--listen", f"127.0.0.1:{port}", "--metrics-port", str(metrics_port)),
        ],
        env=gateway_env(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (directory / "gateway.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            url = f"http://127.0.0.1:{metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return proc.pid, port
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)  # a process starting up: poll its readiness
    tail = (directory / "gateway.log").read_text(errors="replace").splitlines()[-5:]
    raise UserError(f"the gateway did not become ready; its log ends: {tail}")


def stop_gateway(settings: DevSettings) -> bool:
    """Stop the demo's gateway if it runs (SIGTERM, then wait); True if one was stopped."""
    pid_file = demo_dir(settings) / "gateway.pid"
    try:
        pid = int(pid_file.read_text())
        if b"gateway" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            raise ValueError(pid)
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    return True


async def gateway_traffic(settings: Any, options: Any, port: int) -> LoadResult:
    """The fleet's records: vehicles' through the gateway, the rest to Kafka, at once. The
    result counts, per topic, the records that reach it (the gateway skips corrupted frames
    and adds each vehicle's logout), which is what the demo waits for the service to take."""
    from devtools.loadgen import _setting_keys, topics_of
    from devtools.loadgen_gateway import GatewayPlan, run_via_gateway
    from devtools.loadgen_send import run_to_kafka
    from devtools.sim.fleet import GOOD_KINDS, vin_of
    from devtools.sim.world import world_messages

    names = topics_of(settings, options)
    others = {role: t for role, t in names.items() if role != "vehicle"}
    plan = GatewayPlan(targets=(("127.0.0.1", port),), heartbeat_s=0)
    quiet = Progress(None, None)
    vehicles = run_via_gateway(
        plan, world_messages(options), devices=options.vehicles, rate=0, max_frames=None,
        max_seconds=None, progress=quiet,
    )  # fmt: skip
    rest = (m for m in world_messages(options) if m.topic != "vehicle")
    kafka = run_to_kafka(
        settings, others, _setting_keys(others, None), rest, rate=0, max_frames=None,
        max_seconds=None, progress=quiet,
    ) if others else None  # fmt: skip
    if kafka is None:
        (vres, stats), result = await vehicles, LoadResult()
    else:
        (vres, stats), result = await asyncio.gather(vehicles, kafka)
    bad = sum(n for k, n in vres.by_kind.items() if k not in GOOD_KINDS)
    result.frames += vres.frames
    result.by_kind.update(vres.by_kind)
    result.by_topic[names["vehicle"]] = stats.sent - bad
    result.topic = names["vehicle"]
    result.seconds = max(result.seconds, vres.seconds)
    if options.runaway:
        result.runaway_vin = vin_of(0, options.vin_prefix)
    return result
