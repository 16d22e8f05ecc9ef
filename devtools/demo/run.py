"""The body of ``nev-ingest demo``: stack, schema, service, traffic, summary."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devtools.demo import kinds
from devtools.demo.service import say, start_service, stop_service
from devtools.settings import DevSettings, dev_settings_from_args
from devtools.sim import plans
from devtools.sim.promtext import (
    by_label,
    fetch,
    histogram_quantile,
    parse_histogram,
    parse_samples,
    scrape,
    total,
)
from ingest.config import Settings
from ingest.config.kafka_settings import RAW_SOURCES
from ingest.errors import UserError

__all__ = ["run_demo"]

CATCH_UP_TIMEOUT_S = 600.0


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def run_demo(args: argparse.Namespace, base: DevSettings, demo_dir: Path) -> int:
    from devtools.devstack import stack
    from devtools.devstack.process import free_port

    began = time.monotonic()
    say("== 1/5  dev stack: Apache Kafka (KRaft) and PostgreSQL as local processes")
    state = stack.up(base)
    kafka, dsn = state.services["kafka"].url, state.services["postgres"].url
    stop_service(base)  # a previous demo's service, if any: start fresh on this stack
    port = base.metrics.port if _port_free(base.metrics.port) else free_port()
    overrides = {"kafka.bootstrap_servers": kafka, "postgres.dsn": dsn, "metrics.port": port}
    settings = dev_settings_from_args(args, overrides)
    env = {k: v for k, v in os.environ.items() if k not in ("NEV_CONFIG",)}
    env.update(
        NEV_KAFKA_BOOTSTRAP_SERVERS=kafka,
        NEV_POSTGRES_DSN=dsn,
        NEV_METRICS_PORT=str(port),
        **_topic_env(settings),
    )

    say("\n== 2/5  schema: nev-ingest migrate")
    _run([sys.executable, "-m", "ingest", "migrate"], env)

    say(f"\n== 3/5  service: nev-ingest run --workers {args.workers} (in the background)")
    pid = start_service(env, args.workers, demo_dir)
    _until_ready(port, demo_dir / "run.log")
    say(f"  ready (pid {pid}); log: {demo_dir / 'run.log'}")
    before = scrape(port)
    gateway_port = None
    if args.via_gateway:
        from devtools.demo.gateway import start_gateway, stop_gateway

        stop_gateway(base)  # a previous demo's gateway, if any
        gw_pid, gateway_port = start_gateway(env, demo_dir)
        say(f"  gateway: nev-ingest gateway on 127.0.0.1:{gateway_port} (pid {gw_pid}); the")
        say(f"  vehicles send through it over TCP; log: {demo_dir / 'gateway.log'}")

    say(
        f"\n== 4/5  traffic: {args.vehicles:,} simulated vehicles, {args.chargers:,} charging "
        f"piles, {args.packs:,} battery packs x {args.minutes:g} minutes (GB/T 32960 2016 and "
        "2025, the charger and pack profiles, T/CEC 102 pushes; ~0.2 % bad records, one thermal "
        "runaway, a connector stuck in fault and one overheating, a pack with a shorted cell in "
        "a swap station, pack swaps, charging sessions)"
    )
    result, took, options = _traffic(args, settings, port, before, gateway_port)

    say("\n== 5/5  summary")
    _summary(args, settings, env, port, before, result, took, options)
    say(
        f"""
Look further (the stack and the service keep running):
  metrics     curl -s http://127.0.0.1:{port}/metrics | grep ^nev_ingest   (and /readyz)
  queries     eval "$(nev-ingest devstack env)"   then:
              nev-ingest query track {result.runaway_vin} --from 1h
              nev-ingest query latest --prefix {result.runaway_vin[:-3]}
              nev-ingest query latest --kind charger --prefix MA   # the simulated operators
              nev-ingest alerts list
  more load   nev-ingest loadgen --vehicles 10000 --chargers 2000 --packs 5000 --minutes 5
  logs        {demo_dir / "run.log"}  (one JSON object per line)
Stop:
  nev-ingest demo --stop        the service (and the gateway of --via-gateway)
  nev-ingest devstack down      Kafka and PostgreSQL (./dev down does the same)
Demo took {time.monotonic() - began:.0f}s."""
    )
    return 0


def _topic_env(settings: Settings) -> dict[str, str]:
    """The topics the load generator produces to, for the service: it subscribes every raw
    topic (``RAW_SOURCES``) and stops at start when one is missing, and the demo's environment
    drops ``NEV_CONFIG``, so a configured name would otherwise fall back to its default."""
    roles = [*RAW_SOURCES, "dlq", "alerts"]
    return {f"NEV_KAFKA_TOPIC_{r.upper()}": getattr(settings.kafka, f"topic_{r}") for r in roles}


def _run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise UserError(f"{' '.join(cmd[2:])} failed (exit {proc.returncode}): {out[-500:]}")
    for line in out.splitlines()[:8]:
        say(f"  {line}")
    return out


def _until_ready(port: int, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/readyz"
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
    raise UserError(f"the service did not become ready in 120 s; its log ends: {tail}")


def _traffic(
    args: argparse.Namespace,
    settings: Settings,
    port: int,
    before: dict[str, float],
    gateway_port: int | None = None,
) -> tuple[Any, float, Any]:
    """Run the load generator in a thread (the vehicles through the gateway on
    ``gateway_port``, if given); every 2 s say what was sent and stored."""
    from devtools.loadgen import expected_frames, run_loadgen
    from devtools.sim.fleet import FleetOptions

    now_ms = time.time_ns() // 1_000_000
    options = FleetOptions(
        vehicles=args.vehicles,
        chargers=args.chargers,
        packs=args.packs,
        minutes=args.minutes,
        end_ms=now_ms,
        # VINs of their own per run, so a second demo raises its own alerts rather than
        # finding the first run's still open (one open alert per vehicle and rule).
        vin_prefix=f"LDM{now_ms // 60_000 % 10_000:04d}",
    )
    box: dict[str, Any] = {}

    def generate() -> None:
        try:
            if gateway_port is not None:
                from devtools.demo.gateway import gateway_traffic

                box["result"] = asyncio.run(gateway_traffic(settings, options, gateway_port))
            else:
                box["result"] = asyncio.run(run_loadgen(settings, options, progress_stream=None))
        except BaseException as exc:  # handed to the main thread below
            box["error"] = exc

    started = sent_at = time.monotonic()
    thread = threading.Thread(target=generate, name="demo-loadgen", daemon=True)
    thread.start()
    while True:
        thread.join(2.0)
        if not thread.is_alive():
            time.sleep(0.5)  # all sent: poll the service until it has everything
        else:
            sent_at = time.monotonic()
        m = scrape(port)
        stored = total(m, "nev_ingest_frames_consumed_total") - total(
            before, "nev_ingest_frames_consumed_total"
        )
        written = total(m, "nev_ingest_frames_written_total") - total(
            before, "nev_ingest_frames_written_total"
        )
        dead = total(m, "nev_ingest_frames_dead_lettered_total") - total(
            before, "nev_ingest_frames_dead_lettered_total"
        )
        result = box.get("result")
        sent = f"{result.frames:,}" if result else f"~{expected_frames(options):,} (sending)"
        say(
            f"  {time.monotonic() - started:5.1f}s  frames sent {sent} | stored {written:,.0f}"
            f" | dead-lettered {dead:,.0f}"
            f" | alerts raised {total(m, 'nev_ingest_alerts_total', change='raised'):,.0f}"
            f" | lag {total(m, 'kafka_consumergroup_lag'):,.0f}"
        )
        if "error" in box:
            raise UserError(f"the load generator failed: {box['error']!r}")
        if result is not None and _caught_up(m, before, result, time.monotonic() - sent_at):
            return result, time.monotonic() - started, options
        if time.monotonic() - started > CATCH_UP_TIMEOUT_S:
            raise UserError(
                f"the service took {stored:,.0f} frames in {CATCH_UP_TIMEOUT_S:.0f}s; see its log"
            )


# A topic the service has not consumed a record of this long after the last was sent: it has
# no decoder for that kind (an older build); the demo goes on and says so.
IDLE_TOPIC_S = 20.0


def _caught_up(m: dict[str, float], before: dict[str, float], result: Any, idle_s: float) -> bool:
    """Every topic the generator sent to is consumed (or, after ``IDLE_TOPIC_S``, untouched)."""
    name = "nev_ingest_frames_consumed_total"
    for topic, sent in result.by_topic.items():
        got = total(m, name, topic=topic) - total(before, name, topic=topic)
        if got < sent and (got > 0 or idle_s < IDLE_TOPIC_S):
            return False
    return True


def _summary(
    args: argparse.Namespace,
    settings: Settings,
    env: dict[str, str],
    port: int,
    before: dict[str, float],
    result: Any,
    took: float,
    options: Any,
) -> None:
    import psycopg

    text = fetch(port)
    m = parse_samples(text)

    def delta(name: str, **labels: str) -> float:
        return total(m, name, **labels) - total(before, name, **labels)

    reasons_before = by_label(before, "nev_ingest_frames_dead_lettered_total", "reason")
    dead = {
        k: v - reasons_before.get(k, 0)
        for k, v in by_label(m, "nev_ingest_frames_dead_lettered_total", "reason").items()
    }
    dead = {k: v for k, v in dead.items() if v}
    schema = settings.storage.schema
    with psycopg.connect(env["NEV_POSTGRES_DSN"], autocommit=True) as conn:
        rows = kinds.row_lines(conn, schema, options)
        swap = kinds.swap_lines(conn, schema, options)
        session = kinds.session_lines(conn, schema, options)
        alerts = kinds.alert_lines(conn, schema, options)
    by_kind = ", ".join(
        f"{n:,} {k}" for k, n in sorted(result.by_kind.items(), key=lambda x: -x[1])
    )
    missing = [
        t for t, sent in result.by_topic.items()
        if sent and not total(m, "nev_ingest_frames_consumed_total", topic=t)
    ]  # fmt: skip
    hist = parse_histogram(text)
    p50, p99 = histogram_quantile(hist, 0.5), histogram_quantile(hist, 0.99)
    say(f"  frames in       {result.frames:,} ({by_kind})")
    say("  by topic        " + ", ".join(f"{t} {n:,}" for t, n in result.by_topic.items()))
    if missing:
        say(f"  not consumed    {', '.join(missing)}: this build has no decoder for their kind")
    say(f"  frames stored   {delta('nev_ingest_frames_written_total'):,.0f} this run")
    say("  rows in tables  (this run's entities; the dev database keeps earlier runs)")
    for line in rows:
        say(f"    {line}")
    say("  one pack swap")
    for line in swap:
        say(f"    {line[:160]}")
    say("  one charging session")
    for line in session:
        say(f"    {line[:160]}")
    detail = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(dead.items()))
    say(
        f"  dead letters    {sum(dead.values()):,.0f}"
        + (f" ({detail})" if detail else "")
        + f" on {settings.kafka.topic_dlq}"
    )
    say(f"  alerts raised   {delta('nev_ingest_alerts_total', change='raised'):,.0f} this run")
    for line in alerts:
        say(f"    {line}")
    say(
        f"  rate            {result.frames / took:,.0f} frames/s from the first frame sent to "
        f"the last stored ({took:.1f}s, {args.workers} workers); the generator sent at "
        f"{result.frames / max(result.seconds, 1e-9):,.0f} frames/s, so this is its pace: "
        "for the service's own capacity see docs/performance.md"
    )
    if p50 is not None and p99 is not None:
        say(f"  latency         received_at -> committed: p50 {p50:.2f}s, p99 {p99:.2f}s")
    say("\n  What a regulator asks (nev-ingest query ...):")
    for q in _queries(result.runaway_vin, options):
        say(f"\n  $ nev-ingest {' '.join(q)}")
        proc = subprocess.run(
            [sys.executable, "-m", "ingest", *q],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = (proc.stdout or proc.stderr).rstrip().splitlines()
        if proc.returncode == 2 and "invalid choice" in proc.stderr:
            lines = ["(this build has no such query yet)"]
        for line in lines[:8]:
            say(f"    {line[:160]}")
        if len(lines) > 8:
            say(f"    ... ({len(lines) - 8} more lines)")


def _queries(vin: str, options: Any) -> list[list[str]]:
    """The regulator's questions about this run's entities (issue 11's command shapes)."""
    out = [
        ["query", "latest", vin],
        ["query", "alarms", "--level", "3", "--from", "1h"],
    ]
    if plans.swap_count(options):
        swap = plans.swap_plan(options, 0)
        out += [["query", "pack", swap.old_code], ["query", "swaps", "--from", "1h"]]
    plan = plans.charge_plan(options, 0)
    if plan is not None:
        tag = plans.tag_of(options.vin_prefix)
        op = plans.operator_of(0, options.chargers, tag)
        connector = f"{op}:{plans.connector_id_of(0, 0, options.chargers, tag)}"
        out += [["query", "charger", connector], ["query", "sessions", "--vin", plan.vin]]
    out.append(["query", "online", "--kind", "charger"])
    return out
