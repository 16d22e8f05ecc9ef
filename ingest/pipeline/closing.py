"""Bounded closing on a worker's way out: a client or pool that will not close is left behind.

``asyncio.wait_for(x, t)`` does not bound ``x``: at ``t`` it cancels ``x`` and then waits for
``x`` to finish. aiokafka's close paths swallow a cancellation in several places (its fetcher
and client ``close`` suppress ``CancelledError`` around awaiting their own tasks; the group
coordinator's ``close`` awaits its coordination task, whose heartbeat and commit-refresh stops
swallow one too, after which it goes on, into a JoinGroup that a dead member holds for its
whole session timeout), and ``RenewableProducer.stop`` waits in its ``finally`` for a renewal
under way: a cancellation that lands there is used up and the wait goes on past the bound, past
the supervisor's stop deadline, until the worker is killed.

``close_within`` runs the close in a task of its own and stops waiting at the bound: the task
is cancelled and left behind, not awaited. ``run_bounded`` is ``uvloop.run`` whose end (cancel
every task still running, wait for them) is bounded the same way: a task that outlives its
cancellation does not hold the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["close_within", "left_behind", "run_bounded"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Tasks given up: kept referenced (a task only the loop knows may be collected half-way) until
# they end, and recognised when the process exits with them still pending (run_bounded).
_LEFT: set[asyncio.Task[Any]] = set()


def left_behind() -> set[asyncio.Task[Any]]:
    """The closing tasks given up in the running loop that have not ended (yet)."""
    loop = asyncio.get_running_loop()
    return {t for t in _LEFT if not t.done() and t.get_loop() is loop}


def _leave(task: asyncio.Task[Any]) -> None:
    task.cancel()
    _LEFT.add(task)
    task.add_done_callback(_LEFT.discard)


async def close_within(
    what: str, close: Callable[[], Awaitable[object]], timeout_s: float, *, quiet: bool = False
) -> bool:
    """Await ``close()`` for at most ``timeout_s``; True when it finished without an error.
    Past the bound it is cancelled and left behind (not awaited: see the module docstring),
    with one WARNING saying ``what`` did not close; an error it raised is a WARNING too.
    ``quiet``: neither is logged (a half-started client, a replaced producer)."""

    async def closing() -> object:
        return await close()

    task = asyncio.ensure_future(closing())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        _leave(task)
        raise
    if not done:
        _leave(task)
        if not quiet:
            log.warning(
                "%s did not close within %gs: left behind, the worker exits without it "
                "(nothing is lost: what it had in flight was committed or given up "
                "uncommitted before the clients close, and is read again)",
                what,
                timeout_s,
            )
        return False
    if task.cancelled():
        return False
    exc = task.exception()
    if exc is not None and not quiet:
        log.warning("closing %s failed: %r", what, exc)
    return exc is None


def run_bounded(
    main: Coroutine[Any, Any, T],
    *,
    grace_s: float,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> T:
    """``main`` run to its end in a new loop, as ``asyncio.run``/``uvloop.run`` do, except that
    the tasks still running then are given ``grace_s`` to end once cancelled (not for ever):
    those that do not are named in one WARNING and abandoned with the loop."""
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_remaining(loop, grace_s)
            loop.run_until_complete(_within(loop.shutdown_asyncgens(), grace_s))
            loop.run_until_complete(_within(loop.shutdown_default_executor(), grace_s))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _within(aw: Coroutine[Any, Any, None], timeout_s: float) -> None:
    task = asyncio.ensure_future(aw)
    await asyncio.wait({task}, timeout=timeout_s)
    if not task.done():
        _leave(task)


def _cancel_remaining(loop: asyncio.AbstractEventLoop, grace_s: float) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    _, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=grace_s))
    for task in tasks - pending:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during the worker's exit",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if pending:
        log.warning(
            "%d tasks did not end within %gs of their cancellation: the process exits without "
            "them (nothing is lost: every commit is made or given up before this): %s",
            len(pending),
            grace_s,
            sorted(_describe(t) for t in pending),
        )
        _LEFT.update(pending)
        # Pending when the loop goes: their "Task was destroyed but it is pending!" at exit
        # would repeat the WARNING above, once per task.
        default = loop.get_exception_handler()

        def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("task") in _LEFT or context.get("future") in _LEFT:
                return
            if default is not None:
                default(lp, context)
            else:
                lp.default_exception_handler(context)

        loop.set_exception_handler(handler)


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    return f"{task.get_name()} ({name})"
