"""``nev-ingest demo``: the whole system on this machine, in one command.

1. start the dev stack (real Kafka and PostgreSQL as local processes) and migrate the schema;
2. start the service (``nev-ingest run``, in the background, logging to the state directory);
3. generate a few thousand simulated vehicles' traffic (both protocol editions, some bad frames,
   one thermal runaway) into Kafka, with a progress line;
4. wait until the service has stored everything, then print a summary: frames in, rows stored,
   dead letters by reason, alerts raised, rate and latency, and a few regulator queries with
   their output; and say how to look further and how to stop.

``nev-ingest demo --stop`` stops the demo's service (``nev-ingest devstack down`` the stack).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ingest.cli_args import float_range, int_range
from ingest.config import MAX_WORKERS, Settings
from ingest.config_load import add_config_arguments, settings_from_args

__all__ = ["register"]

# Print to the terminal as things happen (the demo is for people).
_OUT = sys.stdout


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
        "--minutes",
        type=float_range(0, 1440, low_open=True),
        default=10.0,
        help="simulated minutes each, up to 1440 (10)",
    )
    p.add_argument(
        "--workers", type=int_range(1, MAX_WORKERS), default=2, help="worker processes (2)"
    )
    p.add_argument("--stop", action="store_true", help="stop the demo's service and exit")
    add_config_arguments(p)
    p.set_defaults(func=_main)


def _say(line: str = "") -> None:
    _OUT.write(line + "\n")
    _OUT.flush()


def _demo_dir(settings: Settings) -> Path:
    from ingest.devstack import Paths

    path = Paths.from_settings(settings).state_dir / "demo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"run" in cmdline and b"ingest" in cmdline else None


def stop_service(settings: Settings) -> bool:
    """Stop the demo's service if it runs (SIGTERM, then wait); True if one was stopped."""
    pid_file = _demo_dir(settings) / "run.pid"
    pid = _running_pid(pid_file)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.pipeline.shutdown_timeout_s + 25
    while _running_pid(pid_file) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    return True


def _main(args: argparse.Namespace) -> int:
    base = settings_from_args(args)
    if args.stop:
        _say("demo: service stopped" if stop_service(base) else "demo: no demo service running")
        return 0
    from ingest.demo_run import run_demo

    return run_demo(args, base, _demo_dir(base))


def start_service(settings_env: dict[str, str], workers: int, demo_dir: Path) -> int:
    """``nev-ingest run`` in the background (own session: Ctrl-C of the demo leaves it)."""
    log = (demo_dir / "run.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "run", "--workers", str(workers)],
        env=settings_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (demo_dir / "run.pid").write_text(str(proc.pid))
    return proc.pid
