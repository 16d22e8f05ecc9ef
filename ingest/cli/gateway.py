"""``nev-ingest gateway``: the GB/T 32960 TCP gateway (docs/gateway.md).

``gateway [run]`` listens for vehicles, enterprise platforms, charging piles and battery packs,
produces every frame to its raw topic and answers as the standard requires (after Kafka
acknowledged the frame), with /metrics, /healthz and /readyz on gateway.metrics_port, until
SIGTERM/SIGINT (then: stop accepting, get the in-flight frames acknowledged and answered,
close). ``gateway passwd USER --accounts FILE`` adds or rotates an enterprise platform's
password (read from stdin, or prompted on a terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ingest.cli.args import int_range
from ingest.config import Settings
from ingest.config.bounds import PORT_MAX, PORT_MIN
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.errors import UserError
from ingest.pipeline.logs import configure_logging

__all__ = ["EXTRA_SERVERS", "gateway_settings", "register", "run_gateway"]

log = logging.getLogger(__name__)

# Factories of servers started beside the TCP listeners (each takes the settings and the
# gateway's metrics registry and returns an ``ingest.gateway.ExtraServer``): the place where
# the T/CEC 102 HTTP receiver (ingest/gateway/tcec/) is wired in.
# A factory may return None: that server is not configured (e.g. ``tcec.listen`` empty).
EXTRA_SERVERS: list[Callable[[Settings, Any], Any]] = [
    lambda settings, registry: _tcec(settings, registry),
]


def _tcec(settings: Settings, registry: Any) -> Any:
    from ingest.gateway.tcec.extra import tcec_extra_server

    return tcec_extra_server(settings, registry)


def register(subparsers: Any) -> None:
    """Add the ``gateway`` subcommand and its ``run`` / ``passwd`` actions."""
    p = subparsers.add_parser(
        "gateway",
        help="run the GB/T 32960 TCP gateway (vehicles, enterprise platforms) into Kafka",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    actions = p.add_subparsers(dest="gateway_action", metavar="ACTION")
    # SUPPRESS: "gateway --listen X run" keeps X (a subparser's defaults would overwrite it).
    run = actions.add_parser(
        "run", help="run the gateway (the default)", argument_default=argparse.SUPPRESS
    )
    _run_arguments(run)
    _run_arguments(p)
    pw = actions.add_parser("passwd", help="add or rotate an enterprise platform's password")
    pw.add_argument("user", help="platform user name (GB/T 32960 STRING12, at most 12 bytes)")
    pw.add_argument("--accounts", required=True, metavar="FILE", help="accounts file (.toml/.json)")
    pw.set_defaults(func=_passwd)
    p.set_defaults(func=_run)
    run.set_defaults(func=_run)


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", help="vehicle/platform listener host:port (gateway.listen_vehicle)")
    p.add_argument(
        "--metrics-port",
        type=int_range(PORT_MIN, PORT_MAX),
        help="port of /metrics, /healthz, /readyz (gateway.metrics_port)",
    )
    p.add_argument("--accounts", help="enterprise-platform accounts file (gateway.accounts_file)")
    add_config_arguments(p)


def _passwd(args: argparse.Namespace) -> int:
    from ingest.gateway.accounts import set_password

    if sys.stdin.isatty():
        password = getpass.getpass(f"password of {args.user}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the two passwords differ; run the command again")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    existed = set_password(Path(args.accounts), args.user, password)
    print(f"{'rotated' if existed else 'added'} {args.user} in {args.accounts}")
    return 0


def gateway_settings(args: argparse.Namespace) -> Settings:
    """The settings of ``gateway [run]``: its --config/--set, then the flags it was given."""
    return settings_from_args(
        args,
        {
            "gateway.listen_vehicle": args.listen,
            "gateway.metrics_port": args.metrics_port,
            "gateway.accounts_file": args.accounts,
        },
    )


def _run(args: argparse.Namespace) -> int:
    settings = gateway_settings(args)
    configure_logging(settings.log.level, static={"service": "gateway"}, fmt=settings.log.format)
    return run_gateway(settings)


def run_gateway(settings: Settings, extra: Sequence[Callable[[Settings, Any], Any]] = ()) -> int:
    """Run until SIGTERM/SIGINT; 0 after a graceful stop."""
    import uvloop

    from ingest.pipeline.closing import LOOP_END_S, run_bounded

    # Not uvloop.run: its end waits without a bound for every task still running to end
    # (ingest.pipeline.closing), and one that outlives its cancellation held the exit.
    return run_bounded(
        _serve(settings, [*EXTRA_SERVERS, *extra]),
        grace_s=LOOP_END_S,
        loop_factory=uvloop.new_event_loop,
        what="gateway",
    )


async def _serve(settings: Settings, extra: Sequence[Callable[[Settings, Any], Any]]) -> int:
    from ingest.gateway import Gateway, GatewayMetrics
    from ingest.gateway.checks import (
        check_listeners_configured,
        check_settings,
        produced_topics,
        topic_sizes,
    )
    from ingest.pipeline.metrics import MetricsServer
    from ingest.wiring import check_kafka, check_topics

    # Bad settings first, before Kafka is asked anything (config check runs check_settings).
    check_listeners_configured(settings)
    check_settings(settings)
    metrics = GatewayMetrics()
    kafka, timeout_s = settings.kafka, settings.kafka.request_timeout_ms / 1000
    await check_kafka(kafka, timeout_s)
    # A missing topic would hold every frame behind the first one sent to it (the send queue
    # keeps order): refuse to start instead, with the one line that says which. And each
    # topic must take the largest batch the gateway sends there: a batch the broker refuses
    # as too large costs the producer its place in the partition's sequence.
    topics = produced_topics(settings)
    await check_topics(kafka, topics, timeout_s, sizes=topic_sizes(settings))
    gateway = Gateway(
        settings,
        metrics=metrics,
        extra_servers=[
            s for s in (make(settings, metrics.registry) for make in extra) if s is not None
        ],
    )
    cfg = settings.gateway
    try:
        server = MetricsServer(
            cfg.metrics_host, cfg.metrics_port, registry=metrics.registry, ready=gateway.readiness
        )
    except OSError as exc:  # the port is taken, or the host is not an address of this machine
        raise UserError(
            f"gateway.metrics_port = {cfg.metrics_port}: cannot listen on "
            f"{cfg.metrics_host}:{cfg.metrics_port} ({exc.strerror}); choose a free port "
            "(--metrics-port or gateway.metrics_port) or stop what holds it"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server.start()
    try:
        await gateway.start()
        log.info("gateway started", extra={"listeners": gateway.ports})
        await stop.wait()
        log.info("gateway stopping: no new connections, flushing in-flight frames")
    finally:
        await gateway.stop()
        server.stop()
    return 0
