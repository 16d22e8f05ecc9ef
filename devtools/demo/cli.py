"""``nev-ingest demo``: the whole system on this machine, in one command.

1. start the dev stack (real Kafka and PostgreSQL as local processes) and migrate the schema;
2. start the service (``nev-ingest run``, in the background, logging to the state directory);
3. generate the traffic of a few thousand simulated vehicles (both protocol editions, some bad
   frames, one thermal runaway), a few hundred charging piles (charger profile and T/CEC 102
   pushes, vehicles of the fleet charging there, one connector stuck in fault and one
   overheating) and standalone packs (swap stations where fleet vehicles swap packs, one pack
   with a shorted cell, storage, second life) into Kafka, with a progress line;
4. wait until the service has stored everything, then print a summary: frames in, this run's
   rows per kind, one pack swap, one charging session (its energy against the trapezoid
   integral of its stored power, its peak power), dead letters by reason, the open alerts of
   every kind, rate and latency, and a few regulator queries with their output; and say how
   to look further and how to stop.

``nev-ingest demo --stop`` stops the demo's service (``nev-ingest devstack down`` the stack).
"""

from __future__ import annotations

import argparse
from typing import Any

from devtools.demo.service import demo_dir, say, stop_service
from devtools.settings import dev_settings_from_args
from ingest.cli.args import float_range, int_range
from ingest.config.bounds import MAX_WORKERS
from ingest.config.load import add_config_arguments

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="start everything locally, ingest simulated traffic, show what happened",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    # A demo on one machine: bounded so that a typo cannot queue hours of traffic.
    p.add_argument(
        "--vehicles", type=int_range(1, 100_000), default=3000, help="simulated vehicles (3000)"
    )
    p.add_argument(
        "--chargers",
        type=int_range(0, 100_000),
        default=200,
        help="simulated charging piles, two connectors each (200)",
    )
    p.add_argument(
        "--packs",
        type=int_range(0, 100_000),
        default=400,
        help="simulated standalone battery packs (400)",
    )
    p.add_argument(
        "--minutes",
        type=float_range(0, 1440, low_open=True),
        default=10.0,
        help="simulated minutes each, up to 1440 (10)",
    )
    p.add_argument(
        "--workers", type=int_range(1, MAX_WORKERS), default=2, help="worker processes (2)"
    )
    p.add_argument(
        "--via-gateway",
        action="store_true",
        help="start a gateway (nev-ingest gateway) and send the vehicles' frames through it "
        "over TCP, one connection per vehicle",
    )
    p.add_argument("--stop", action="store_true", help="stop the demo's service and exit")
    add_config_arguments(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    base = dev_settings_from_args(args)
    if args.stop:
        from devtools.demo.gateway import stop_gateway

        say("demo: service stopped" if stop_service(base) else "demo: no demo service running")
        if stop_gateway(base):
            say("demo: gateway stopped")
        return 0
    from devtools.demo.run import run_demo

    return run_demo(args, base, demo_dir(base))
