"""A lane of the gateway's dispatcher whose batch is refused retriably by ``send_batch`` while
an earlier batch of the lane failed after the producer accepted it.

aiokafka's outcome order is scripted by a stub producer: real Kafka cannot be made to fail one
batch (OutOfOrderSequenceNumber) exactly while the next waits in ``send_batch`` for it to
drain, and that wait then ends in KafkaTimeoutError. The real-broker side of the dispatcher is
in tests/integration/test_gateway_producer.py and test_gateway_kafka_refusal.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from ingest.gateway.limits import Budget
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.producer import Dispatcher, Pending
from ingest.gateway.renewal import ProducerPool

pytestmark = pytest.mark.unit

TIMEOUT_S = 10.0  # a bound on a hang, not a speed assertion


class _Batch:
    """One record per batch, so that each frame is a batch of its own."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: None, headers: Any) -> Any:
        if self.values:
            return None
        self.values.append(value)
        return object()

    def close(self) -> None:
        pass


class _Producer:
    """Accepts every batch at once; ``first`` scripts the old producer's two sends."""

    def __init__(self, scripted: bool) -> None:
        self.scripted = scripted
        self.sent: list[bytes] = []
        self._held: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        held = self._held
        if self.scripted and held is None:
            self._held = fut  # the first batch: accepted, numbered, not resolved yet
            return fut
        if self.scripted and held is not None and not held.done():
            # The second batch waits for the first to drain; the first fails meanwhile (the
            # dispatcher hears of it first), then the wait ends retriably.
            held.set_exception(OutOfOrderSequenceNumber())
            await asyncio.sleep(0)  # the first batch's callback runs
            raise KafkaTimeoutError()
        self.sent.append(batch.values[0])
        fut.set_result(None)
        return fut


async def _until(probe: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_batch_refused_retriably_after_an_earlier_one_failed_does_not_stop_the_lane() -> (
    None
):
    # The lane took the retriably refused batch back without settling: the failed earlier
    # batch stayed in it, with the old producer, and the lane returned at every attempt
    # ("batches still with the old producer"): no frame was sent or answered again, the
    # in-flight budget held them for good, every socket paused.
    old = _Producer(scripted=True)
    made: list[_Producer] = []

    def make() -> _Producer:
        made.append(_Producer(scripted=False))
        return made[-1]

    answered: list[tuple[bytes, BaseException | None]] = []

    def done(value: bytes) -> Callable[[BaseException | None], None]:
        return lambda exc: answered.append((value, exc))

    dispatcher = Dispatcher(
        ProducerPool(old, make), GatewayMetrics(), Budget(1000, 1 << 20), lambda: None
    )
    run = asyncio.create_task(dispatcher.run())
    try:
        values = [b"x0", b"x1", b"x2"]
        for v in values:
            dispatcher.submit(Pending("t", v, b"k", [], done(v), 0.0))
        await _until(lambda: len(answered) == 3, "the three frames answered")
        dispatcher.submit(Pending("t", b"later", b"k", [], done(b"later"), 0.0))
        await _wait(dispatcher.drained())
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    assert answered == [(v, None) for v in [*values, b"later"]]
    # Written once each, in read order, by the new producer.
    assert [v for p in made for v in p.sent] == [*values, b"later"]
    assert dispatcher.budget.frames == 0


async def _wait(aw: Awaitable[None]) -> None:
    await asyncio.wait_for(aw, TIMEOUT_S)
