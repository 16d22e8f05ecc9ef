"""The demo's service process and its terminal output (shared by the command and its body)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.settings import DevSettings

__all__ = ["demo_dir", "say", "start_service", "stop_service"]

# Print to the terminal as things happen (the demo is for people).
_OUT = sys.stdout


def say(line: str = "") -> None:
    _OUT.write(line + "\n")
    _OUT.flush()


def demo_dir(settings: DevSettings) -> Path:
    from devtools.devstack import Paths

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


def stop_service(settings: DevSettings) -> bool:
    """Stop the demo's service if it runs (SIGTERM, then wait); True if one was stopped."""
    pid_file = demo_dir(settings) / "run.pid"
    pid = _running_pid(pid_file)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.pipeline.shutdown_timeout_s + 25
    while _running_pid(pid_file) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    return True


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
