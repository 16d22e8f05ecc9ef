"""Processes the dev stack starts: spawn detached, recognise by pid + start time, stop by pid.

A pid alone is not an identity (pids are reused), so every service records the kernel's start
time of its process too (/proc/<pid>/stat field 22) and ``down`` signals a pid only while both
still match. Nothing here looks processes up by name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ingest.errors import UserError

# Poll interval while waiting for a process to exit or a port to open. These are retries of a
# real check, not sleeps standing in for one.
POLL_S = 0.1

# Services this process spawned, by pid. Keeping the Popen objects lets us reap our own children
# (no zombies, no "subprocess is still running" ResourceWarning when a test session started them);
# services started by another `nev-ingest devstack up` are found by pid and start time instead.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks since boot, or None if it is gone/a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        _reap(pid)
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    # Our own child: collect its exit status so it does not linger as a zombie.
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def is_running(pid: int | None, started: int | None) -> bool:
    return pid is not None and started is not None and start_time(pid) == started


def _child_io(
    out: IO[bytes] | int, cwd: Path | None, env: Mapping[str, str] | None, user: str | None
) -> dict[str, Any]:
    """How every child starts: no stdin (it must never wait on the caller's terminal), output
    and errors together into ``out``."""
    if user is not None:
        # As `user`, with its HOME: libpq (pg_basebackup, a --secure standby's walreceiver) looks
        # for a client certificate in ~/.postgresql, and root's home is closed to that user.
        env = {**(os.environ if env is None else env), "HOME": pwd.getpwnam(user).pw_dir}
    return {
        "stdin": subprocess.DEVNULL,
        "stdout": out,
        "stderr": subprocess.STDOUT,
        "cwd": cwd,
        "env": None if env is None else dict(env),
        "user": user,
    }


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> tuple[int, int]:
    """Start a long-running service detached from our session; returns (pid, start time).

    stdin is /dev/null and output goes to ``log``, so the service never holds the terminal or a
    pipe of the caller (``$(nev-ingest devstack up)`` would otherwise wait for it forever).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), **_child_io(out, cwd, env, user), start_new_session=True
        )
    _CHILDREN[proc.pid] = proc
    started = start_time(proc.pid)
    if started is None:
        raise UserError(f"{argv[0]} exited at once; see {log}")
    return proc.pid, started


@contextlib.contextmanager
def open_files_raised(want: int) -> Iterator[int]:
    """Children spawned inside start with as many open files as the OS allows, up to ``want``:
    the hard limit raised to ``want`` where permitted (root or CAP_SYS_RESOURCE), at most
    fs.nr_open (``want`` above it is lowered to it), else it stays; the soft limit to the hard
    one. Yields the children's soft limit; this process's limits are restored after (new
    children only inherit them).

    For the broker, which keeps files open for every partition: at the default soft limit
    (1,024 on many systems) a few hundred topics stop it with "Too many open files"."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        high = hard
        raised = hard_limit_wanted(hard, want, _nr_open())
        if raised is not None:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, raised))
                high = raised
            except (ValueError, OSError):  # not permitted: the hard limit is the most
                pass
        resource.setrlimit(resource.RLIMIT_NOFILE, (high, high))
        yield high
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def hard_limit_wanted(hard: int, want: int, nr_open: int | None) -> int | None:
    """The hard open-file limit to ask for, or None to keep ``hard``: never lower (an unlimited
    hard limit stays unlimited: lowered, it could not be raised back without privileges), at
    most ``nr_open`` (fs.nr_open: the kernel refuses more)."""
    if hard == resource.RLIM_INFINITY:
        return None
    if nr_open is not None:
        want = min(want, nr_open)
    return want if hard < want else None


def _nr_open() -> int | None:
    """fs.nr_open, the most open files the kernel lets a process have, or None if unknown."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return None


def run(
    argv: Sequence[str],
    *,
    what: str,
    log: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    timeout_s: float | None = None,
) -> str:
    """Run a setup command to completion; a one-line ``UserError`` naming the log if it fails."""
    out: IO[bytes] | int
    out = log.open("ab") if log is not None else subprocess.PIPE
    try:
        result = subprocess.run(
            list(argv), **_child_io(out, cwd, env, user), timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"{what} did not finish within {timeout_s:g}s") from None
    finally:
        if log is not None and not isinstance(out, int):
            out.close()
    text = (result.stdout or b"").decode(errors="replace")
    if result.returncode != 0:
        where = f"see {log}" if log is not None else _last_line(text)
        raise UserError(f"{what} failed (exit {result.returncode}): {where}")
    return text


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def terminate(pid: int, started: int, *, timeout_s: float, name: str) -> bool:
    """SIGTERM the process if it is still the one we started; SIGKILL it after ``timeout_s``.

    Returns False if it had already gone.
    """
    if not is_running(pid, started):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, started, timeout_s):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, started, 10.0):
        raise UserError(f"{name} (pid {pid}) survived SIGKILL; check it with ps")
    return True


def wait_gone(pid: int, started: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_running(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` if it can be bound now, else a port the kernel picks."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers do: a port whose old connections sit in TIME_WAIT is still free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise UserError(f"no free TCP port on {host}")


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], bool],
    *,
    alive: Callable[[], bool],
    timeout_s: float,
    what: str,
    log: Path,
) -> None:
    """Retry ``check`` until it passes; fail at once if the process died, or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if not alive():
            raise UserError(f"{what} exited during startup; last lines in {log}: {tail(log)}")
        if time.monotonic() > deadline:
            raise UserError(f"{what} did not accept connections within {timeout_s:g}s; see {log}")
        time.sleep(POLL_S)


def tail(log: Path, lines: int = 3) -> str:
    """The last error-looking lines of a log, joined into one line for a message."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if "ERROR" in line or "FATAL" in line or "Error" in line]
    picked = (errors or text)[-lines:]
    return " | ".join(line.strip()[:300] for line in picked) or "(empty log)"
