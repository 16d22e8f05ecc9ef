"""A turn of the event loop for the write lanes, between two slices of CPU work.

A worker is one event loop, and its CPU steps (a decode slice, a rule slice) run between the
write lanes' statements. ``asyncio.sleep(0)`` alone gives the lanes less than it seems. A
statement's response that arrived during a slice completes its future in the next
iteration's I/O callback, and that only schedules the lane's wake-up; by then the step that
yielded is already queued ahead of it, and runs the next slice first. So the lane's
transaction waited for two slices ("idle in transaction"), not one.

Yielding three times lets the I/O callback run, then the lane send its next statement, before
the next slice starts. That holds for a lane awaiting its statement directly on the
connection, as a write's statements are; a lane one more future away (a ``wait_for``, the
step between batches) may still wait for the next slice. uvloop, which the workers run, runs
I/O callbacks in its poll phase and needs two; asyncio's loop (tests, in-process use) needs
three (tests/unit/test_turns.py).
"""

from __future__ import annotations

import asyncio
from typing import Final

__all__ = ["lanes_turn"]

_YIELDS: Final = 3


async def lanes_turn() -> None:
    """Let the tasks that pending I/O wakes run before this one goes on."""
    for _ in range(_YIELDS):
        await asyncio.sleep(0)
