"""``lanes_turn``: a task woken by I/O that arrived during a slice of CPU work runs before the
next slice, on both event loops the service runs on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from ingest.pipeline.turns import lanes_turn

pytestmark = pytest.mark.unit


async def order_of(turn: Callable[[], Awaitable[None]]) -> list[str]:
    """A "lane" waits for a response on a stream; it arrives during "slice 1"; the slicing task
    takes ``turn`` and runs "slice 2"."""
    ours, theirs = socket.socketpair()
    order: list[str] = []
    waiting = asyncio.Event()

    async def lane() -> None:
        reader, writer = await asyncio.open_connection(sock=theirs)
        waiting.set()
        await reader.read(1)  # as a statement's response, awaited directly
        order.append("lane")
        writer.close()

    task = asyncio.create_task(lane())
    await waiting.wait()
    await asyncio.sleep(0)  # the lane is in its read
    ours.send(b"x")  # the response, during slice 1
    order.append("slice 1")
    await turn()
    order.append("slice 2")
    await task
    ours.close()
    return order


def yields(n: int) -> Callable[[], Awaitable[None]]:
    async def turn() -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    return turn


LANE_FIRST = ["slice 1", "lane", "slice 2"]
LANE_LATE = ["slice 1", "slice 2", "lane"]  # the lane's transaction waited for slice 2 too


@pytest.mark.parametrize(
    ("run", "two"), [(asyncio.run, LANE_LATE), (uvloop.run, LANE_FIRST)], ids=["asyncio", "uvloop"]
)
def test_the_woken_lane_runs_before_the_next_slice(
    run: Callable[..., list[str]], two: list[str]
) -> None:
    assert run(order_of(lanes_turn)) == LANE_FIRST
    assert run(order_of(yields(1))) == LANE_LATE  # what the slices did before
    assert run(order_of(yields(2))) == two  # uvloop needs two, asyncio three
