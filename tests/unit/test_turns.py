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

    async def lane() -> None:
        reader, writer = await asyncio.open_connection(sock=theirs)
        await reader.read(1)
        order.append("lane")
        writer.close()

    task = asyncio.create_task(lane())
    await asyncio.sleep(0.01)  # the lane waits for its response
    ours.send(b"x")  # which arrives during slice 1
    order.append("slice 1")
    await turn()
    order.append("slice 2")
    await task
    ours.close()
    return order


async def one_sleep() -> None:
    await asyncio.sleep(0)


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_the_woken_lane_runs_before_the_next_slice(run: Callable[..., list[str]]) -> None:
    assert run(order_of(lanes_turn)) == ["slice 1", "lane", "slice 2"]
    # what a single yield gave: the lane waited for slice 2 as well
    assert run(order_of(one_sleep)) == ["slice 1", "slice 2", "lane"]
