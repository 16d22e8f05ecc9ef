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

A revoke's steps after its drain (``Worker.on_revoked``) are the stop's, bounded the same way:
the whole consumer group waits for the revoke callback of every member, so one that a stalled
database or broker held would stall the group's rebalance (``after_revoke_drain_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = [
    "CLIENTS_S",
    "COMMIT_FLUSH_S",
    "DELETE_PUBLISHED_S",
    "FLUSH_LATEST_S",
    "HOUSEKEEPING_S",
    "KEEPER_S",
    "LOOP_END_S",
    "POOLS_S",
    "STOP_GRACE_S",
    "WRITER_S",
    "after_drain_s",
    "after_revoke_drain_s",
    "close_within",
    "end_within",
    "left_behind",
    "run_bounded",
    "within",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The graceful stop's steps after the writer drained (or its deadline, pipeline.
# shutdown_timeout_s, passed), in their order, each bounded: the supervisor kills a worker still
# alive STOP_GRACE_S after that deadline, so their sum (``after_drain_s``) must fit it with a
# margin, or a slow database or broker gets the worker killed instead of exiting 0.
FLUSH_LATEST_S: Final = 3.0  # merge pending latest_state tuples, every shard together
DELETE_PUBLISHED_S: Final = 1.5  # delete acknowledged alerts_outbox rows, every shard together
# The writer's end once closed: nothing is in flight after the drain or the abandon, but an
# abandoned write whose cancellation is swallowed (a COMMIT under way) would hold it for ever.
WRITER_S: Final = 0.5
COMMIT_FLUSH_S: Final = 1.0  # Kafka's copy of the offsets (the database holds them anyway)
HOUSEKEEPING_S: Final = 1.0  # the housekeeping and Kafka-commit tasks (with the upkeep pass)
CLIENTS_S: Final = 4.0  # the Kafka consumer and producer, closed together
POOLS_S: Final = 2.0  # the sink's database pools
KEEPER_S: Final = 3.0  # the signature-key keeper (its last flush of new keys), if configured
LOOP_END_S: Final = 1.0  # the loop's end: leftover tasks, async generators, default executor
STOP_GRACE_S: Final = 20.0  # the supervisor's stop_grace_s (ingest.cli.run)


def after_drain_s() -> float:
    """The most the graceful stop's steps after the drain take together (the bounds above)."""
    return (
        FLUSH_LATEST_S
        + DELETE_PUBLISHED_S
        + WRITER_S
        + COMMIT_FLUSH_S
        + HOUSEKEEPING_S
        + CLIENTS_S
        + POOLS_S
        + KEEPER_S
        + LOOP_END_S
    )


def after_revoke_drain_s() -> float:
    """The most a revoke's steps after its drain take together (the stop's bounds, the same
    steps): the group waits for the revoke callback, within kafka_limits.REVOKE_MARGIN_MS past
    pipeline.revoke_timeout_s, and then for the rejoin too."""
    return FLUSH_LATEST_S + DELETE_PUBLISHED_S + COMMIT_FLUSH_S


# Tasks given up: kept referenced (a task only the loop knows may be collected half-way) until
# they end, and recognised when the process exits with them still pending (run_bounded).
_LEFT: set[asyncio.Task[Any]] = set()


def left_behind() -> set[asyncio.Task[Any]]:
    """The closing tasks given up in the running loop that have not ended (yet)."""
    loop = asyncio.get_running_loop()
    return {t for t in _LEFT if not t.done() and t.get_loop() is loop}


def _leave(task: asyncio.Task[Any], what: str = "", *, quiet: bool = True) -> None:
    task.cancel()
    _LEFT.add(task)
    task.add_done_callback(_LEFT.discard)
    task.add_done_callback(functools.partial(_retrieve, what, quiet))


def _retrieve(what: str, quiet: bool, task: asyncio.Task[Any]) -> None:
    # Retrieved, or asyncio logs "Task exception was never retrieved" with a traceback when a
    # task given up fails later: noise for a close already reported as left behind.
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not quiet:
        log.debug("closing %s, left behind, failed later: %r", what, exc)


# What a close left behind leaves undone, for its WARNING (``close_within``'s ``undone``).
READ_AGAIN: Final = (
    "nothing is lost: the offsets were committed with the rows before the clients close, or "
    "the frames given up uncommitted, and the next owner reads those again"
)
# Who goes on without a close left behind (``close_within``'s and ``end_within``'s ``goes_on``).
EXITS: Final = "the worker exits without it"


async def close_within(
    what: str,
    close: Callable[[], Awaitable[object]],
    timeout_s: float,
    *,
    quiet: bool = False,
    undone: str = READ_AGAIN,
    verb: str = "close",
    goes_on: str = EXITS,
) -> bool:
    """Await ``close()`` for at most ``timeout_s``; True when it finished without an error.
    Past the bound it is cancelled and left behind (not awaited: see the module docstring),
    with one WARNING saying ``what`` did not ``verb``, that the caller ``goes_on`` without it,
    and ``undone`` (what becomes of what it had not done); an error it raised is a WARNING
    too. ``quiet``: neither is logged (a half-started client, a replaced producer)."""

    async def closing() -> object:
        return await close()

    task = asyncio.ensure_future(closing())
    # Named for the leftover-task WARNING at the loop's end (run_bounded).
    task.set_name(f"closing {what}")
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        _leave(task, what, quiet=quiet)
        raise
    if not done:
        _leave(task, what, quiet=quiet)
        if not quiet:
            log.warning(
                "%s did not %s within %gs: left behind, %s (%s)",
                what,
                verb,
                timeout_s,
                goes_on,
                undone,
            )
        return False
    if task.cancelled():
        return False
    exc = task.exception()
    if exc is not None and not quiet:
        # "closing the database pools failed", "merging latest_state failed"
        log.warning("%s failed: %r", f"closing {what}" if verb == "close" else what, exc)
    return exc is None


async def within(aw: Awaitable[T], timeout_s: float, what: str) -> T:
    """``aw``'s result, or ``TimeoutError`` at ``timeout_s`` for real: ``aw`` runs in a task of
    its own, cancelled and left behind at the bound (not awaited: an asyncpg query cancelled
    on a server that answers nothing holds its connection's shielded release, and
    ``asyncio.wait_for`` would wait for that). For a read whose caller has a deadline of its
    own (a rebalance callback the group's heartbeat waits for) and retries later."""
    task = asyncio.ensure_future(aw)
    task.set_name(what)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        _leave(task, what)
        raise
    if not done:
        _leave(task, what)
        raise TimeoutError(f"{what} did not answer within {timeout_s:g}s")
    return task.result()


async def end_within(
    task: asyncio.Task[Any],
    what: str,
    timeout_s: float,
    *,
    cancel: bool = True,
    reported: bool = False,
    goes_on: str = EXITS,
) -> None:
    """Cancel ``task`` (``cancel``; else it was told to end) and wait at most ``timeout_s`` for
    it to end; past that it is cancelled and left behind (one WARNING: the caller ``goes_on``).
    An error it raised is never raised: logged (a WARNING) unless ``reported`` (raised by the
    caller already), as the worker's run may be failing for another reason, the one raised."""
    if task in _LEFT:
        return  # given up and reported already (the stop's writer, then the run's finally)
    if cancel:
        task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if done:
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not reported:
            log.warning("%s failed: %r", what, exc)
        return
    _leave(task, what)
    log.warning(
        "%s did not end within %gs%s: left behind, %s",
        what,
        timeout_s,
        " of its cancellation" if cancel else "",
        goes_on,
    )


# What a process run by run_bounded has settled before its loop's end, so that the tasks the end
# abandons lose nothing (its WARNING), by ``what`` the process is.
SETTLED: Final = {
    "worker": "every commit is made or given up before this",
    "gateway": "every frame was acknowledged and answered, or left unanswered for its sender to "
    "send again, before this",
}


def run_bounded(
    main: Coroutine[Any, Any, T],
    *,
    grace_s: float,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    what: str = "worker",
) -> T:
    """``main`` run to its end in a new loop, as ``asyncio.run``/``uvloop.run`` do, except that
    the end (the tasks still running cancelled and waited for, async generators closed, the
    default executor shut down) has ``grace_s`` in all, not for ever: the tasks that do not end
    in time are named in one WARNING and abandoned with the loop. ``what`` (a key of
    ``SETTLED``: "worker", "gateway") names the process in its messages."""
    if what not in SETTLED:
        raise ValueError(f"run_bounded: what={what!r}, expected one of {sorted(SETTLED)}")
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            # One deadline for the three steps, each given what the ones before left.
            deadline = loop.time() + grace_s
            _cancel_remaining(loop, grace_s, what)
            for step in (loop.shutdown_asyncgens, loop.shutdown_default_executor):
                loop.run_until_complete(_within(step(), max(0.0, deadline - loop.time())))
            _close_left(loop)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _within(aw: Coroutine[Any, Any, None], timeout_s: float) -> None:
    task = asyncio.ensure_future(aw)
    await asyncio.wait({task}, timeout=timeout_s)
    if not task.done():
        _leave(task)


def _close_left(loop: asyncio.AbstractEventLoop) -> None:
    # A coroutine of a task still pending is closed when it is collected, at interpreter exit:
    # its `finally` then runs with no loop and prints "Exception ignored in: <coroutine ...>
    # RuntimeError: no running event loop" (not a log line). Closed here, while the loop
    # exists but no longer runs (an await there fails at once, ending the coroutine); what it
    # raises is the same abandonment, already reported. One that awaits a future in its
    # `finally` ignores a close ("coroutine ignored GeneratorExit"): closed again, a few times.
    for task in [t for t in _LEFT if t.get_loop() is loop and not t.done()]:
        coro = task.get_coro()
        for _ in range(8):
            if getattr(coro, "cr_frame", None) is None:
                break
            with contextlib.suppress(Exception):
                coro.close()


def _cancel_remaining(loop: asyncio.AbstractEventLoop, grace_s: float, what: str) -> None:
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
                    "message": f"unhandled exception during the {what}'s exit",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if pending:
        log.warning(
            "%d tasks did not end within %gs of their cancellation: the %s exits without them "
            "(nothing is lost: %s): %s",
            len(pending),
            grace_s,
            what,
            SETTLED[what],
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
