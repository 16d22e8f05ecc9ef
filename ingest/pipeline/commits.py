"""Kafka offset commits off the write path.

The offsets that matter are the ones stored with the rows (the consumer seeks to those). The
copy in Kafka is for the tools that read a group's lag there (kafka-consumer-groups, exporters),
so it need not hold up the next batch: an OffsetCommit round trip costs ~50 ms on the dev
broker, which in the write path cost a worker ~25 % of its throughput (bench_pipeline). The
writer hands over each committed batch's offsets; this task commits the latest ones, one
request at a time, coalescing whatever arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["KafkaCommitter"]

log = logging.getLogger(__name__)


class KafkaCommitter:
    """Commits the newest offsets of owned partitions, in the background; see the module doc."""

    def __init__(self, consumer: Any, owned: Callable[[], set[Any]], timeout_s: float = 10.0):
        self._consumer = consumer
        self._owned = owned
        self._timeout = timeout_s
        self._pending: dict[Any, int] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def offer(self, offsets: dict[Any, int]) -> None:
        """Offsets the database committed (next offset per partition); returns at once."""
        self._pending.update(offsets)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Commit what is pending now (the rebalance and shutdown paths call this too)."""
        async with self._lock:
            owned = self._owned()
            offsets = {tp: off for tp, off in self._pending.items() if tp in owned}
            self._pending.clear()
            if not offsets:
                return
            try:
                await asyncio.wait_for(self._consumer.commit(offsets), self._timeout)
            except Exception as exc:  # the database holds the offsets: log and go on
                log.info("Kafka offset commit failed (the database has the offsets): %r", exc)
