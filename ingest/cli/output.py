"""The commands' output when its reader goes away (``| head``): one place that tells a closed
pipe on stdout from any other broken pipe, and lets the command end quietly, its exit status
kept. Notes on stderr never cost the output on stdout."""

from __future__ import annotations

import contextlib
import os
import select
import sys

__all__ = [
    "discard_stdout",
    "flushed",
    "note",
    "open_closed_streams",
    "row_count",
    "stdout_gone",
]


def open_closed_streams() -> None:
    """A command started with stdout or stderr closed (``>&-``, some cron set-ups) has no
    ``sys.stdout``/``sys.stderr``; what it writes there goes to /dev/null instead of raising
    on the first write."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader closed it (poll reports an error)."""
    if sys.stdout is None:
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor: replaced, closed, no poll
        return False


def discard_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered goes nowhere, and Python's flush at
    exit does not report the pipe again ("Exception ignored", exit 120)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def flushed(code: int) -> int:
    """``code``, once what stdout still buffers is out (or its reader is gone: no failure of
    the command, whose status stands)."""
    if sys.stdout is None:  # started with stdout closed (>&-): nothing to flush
        return code
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()
    except (OSError, ValueError):  # closed or unwritable: the command's own status stands
        pass
    return code


def note(text: str) -> None:
    """A line on stderr for the person at the terminal; lost, not fatal, if nobody reads it."""
    if sys.stderr is None:  # started with stderr closed: print(file=None) would use stdout
        return
    try:
        print(text, file=sys.stderr, flush=True)
    except BrokenPipeError:
        # Its reader is gone: what is buffered must not fail again at exit (status 120).
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stderr.fileno())
            os.close(devnull)
    except (OSError, ValueError):
        pass


def row_count(n: int) -> str:
    """``1 row``, ``2 rows``: the count a command's notes print."""
    return f"{n} row" if n == 1 else f"{n} rows"
