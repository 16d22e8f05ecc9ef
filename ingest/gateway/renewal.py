"""The gateway's idempotent Kafka producer, replaced by a new one when a partition's sequence
has a gap, and each old one stopped only once nothing sent with it is still unresolved.

Why a gap happens (aiokafka 0.14): the producer gives a batch its sequence numbers when the
sender takes it from the accumulator (``_pop_batch``) and never takes them back. A batch that
then fails (the broker refuses it as too large or not authorised; a partition without a leader
for longer than ``request_timeout_ms`` expires it just after numbering it) leaves the next
number of that partition unused, and the broker answers every later batch of the partition
``OutOfOrderSequenceNumber`` for as long as the producer lives. Only a new producer (a new
producer id, whose sequences start afresh) writes there again. So any failure of a batch that
the producer accepted means: replace the producer.

The old producer is not stopped at once: other partitions' batches may still be on their way
with it (they complete normally, or fail and go again with the new one); stopping it would fail
them all with ``ProducerClosed``. It is stopped when its last unresolved send resolves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

from aiokafka.errors import OutOfOrderSequenceNumber, ProducerClosed

from ingest.pipeline.closing import CLIENTS_S, close_within, end_within

__all__ = ["NOT_WRITTEN", "ProducerPool", "RenewingSender"]

log = logging.getLogger(__name__)

_BACKOFF_MAX_S: Final = 2.0
# A producer's stop, and the end of a replacement still starting, each get CLIENTS_S; past it
# they are left behind (closing.close_within): asyncio.wait_for cancels at its bound and then
# waits for a stop that swallows the cancellation, holding the gateway's exit.
_GOES_ON: Final = "the gateway does not wait for it"
_UNDONE: Final = (
    "nothing is lost: a frame Kafka did not acknowledge was not answered, and its sender "
    "sends it again"
)

# A send's failure that says it was never written, so that it may go again with the new
# producer: behind another send's gap in its partition's sequence, or caught by the stop of a
# producer replaced meanwhile.
NOT_WRITTEN: Final = (OutOfOrderSequenceNumber, ProducerClosed)


class ProducerPool:
    """The current producer, a replacement under way, and the old ones still in use.

    ``make`` builds a new, not yet started producer. ``first`` is stopped by ``close`` only
    when ``owns_first`` (a producer handed in by a caller is the caller's to stop); the ones
    made here always are. ``on_replaced`` is called once per replacement (its metric)."""

    def __init__(
        self,
        first: Any,
        make: Callable[[], Any],
        *,
        owns_first: bool = True,
        on_replaced: Callable[[], object] = lambda: None,
    ) -> None:
        self.current = first
        self._on_replaced = on_replaced
        self._make = make
        self._owned: set[int] = {id(first)} if owns_first else set()
        self._users: dict[int, int] = {}  # id(producer) -> sends not yet resolved
        self._retired: dict[int, Any] = {}  # replaced, not yet stopped
        self._renewing: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.renewals = 0

    async def ready(self) -> Any:
        """The producer to send with: the current one, once a replacement under way is done."""
        while self._renewing is not None:
            await asyncio.shield(self._renewing)
        return self.current

    def use(self, producer: Any) -> None:
        """A send with ``producer`` starts: it is not stopped until ``release``."""
        self._users[id(producer)] = self._users.get(id(producer), 0) + 1

    def release(self, producer: Any) -> None:
        """That send resolved; an old producer with no send left is stopped now."""
        key = id(producer)
        left = self._users.get(key, 0) - 1
        if left > 0:
            self._users[key] = left
            return
        self._users.pop(key, None)
        old = self._retired.pop(key, None)
        if old is not None:
            self._stop_later(old)

    def broken(self, producer: Any) -> None:
        """A send with ``producer`` failed after the producer accepted it: its partition's
        sequence has a gap. Starts a replacement, unless ``producer`` was replaced already
        (several sends see the same gap; one new producer serves them all)."""
        if producer is not self.current or self._renewing is not None:
            return
        self._renewing = asyncio.get_running_loop().create_task(self._renew(producer))

    async def _renew(self, failed: Any) -> None:
        backoff = 0.05
        try:
            while True:
                fresh = self._make()
                try:
                    await fresh.start()
                    break
                except asyncio.CancelledError:  # the gateway stops: leave nothing running
                    await asyncio.shield(_stop(fresh, quiet=True))
                    raise
                except Exception as exc:  # the broker away: the frames wait, as in an outage
                    await _stop(fresh, quiet=True)
                    log.warning(
                        "a new Kafka producer could not start (%r); again in %.2fs", exc, backoff
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
            self._owned.add(id(fresh))
            self.current = fresh
            self.renewals += 1
            self._on_replaced()
        finally:
            self._renewing = None
        log.warning(
            "the Kafka producer was replaced by a new one: a batch Kafka failed after numbering "
            "it left a gap in the partition's sequence, which the broker refuses every later "
            "batch for (OutOfOrderSequenceNumber); what was not acknowledged goes again"
        )
        if self._users.get(id(failed), 0) > 0:
            self._retired[id(failed)] = failed  # stopped by the release of its last send
        else:
            self._stop_later(failed)

    def _stop_later(self, producer: Any) -> None:
        if id(producer) not in self._owned:
            return
        self._owned.discard(id(producer))
        task = asyncio.get_running_loop().create_task(_stop(producer))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """Stop every producer of the pool that is ours (the current one, the old ones)."""
        if self._renewing is not None:
            # A new producer still starting (the broker away): cancelled, it stops that one.
            await end_within(
                self._renewing, "the Kafka producer's replacement", CLIENTS_S, goes_on=_GOES_ON
            )
        for producer in [self.current, *self._retired.values()]:
            self._stop_later(producer)
        self._retired.clear()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)


async def _stop(producer: Any, *, quiet: bool = False) -> None:
    # Best effort: an old producer has nothing left to deliver; on the way out, bounded for
    # real. ``quiet``: one that never started (its failure was logged).
    await close_within(
        "a Kafka producer", producer.stop, CLIENTS_S, quiet=quiet, undone=_UNDONE, goes_on=_GOES_ON
    )


class RenewingSender:
    """aiokafka's per-record ``send`` over a ``ProducerPool`` (the T/CEC receiver's producer):
    a record that fails after the producer accepted it has the producer replaced, so that
    one push refused for good (or expired without a leader) does not get every later push of
    its partition refused ``OutOfOrderSequenceNumber``; those are retried by their senders."""

    def __init__(self, pool: ProducerPool) -> None:
        self.pool = pool

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        producer = await self.pool.ready()
        self.pool.use(producer)
        try:
            fut: asyncio.Future[Any] = await producer.send(
                topic,
                value,
                key=key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=headers,
            )
        except BaseException:
            self.pool.release(producer)
            raise
        fut.add_done_callback(functools.partial(self._settled, producer))
        return fut

    def _settled(self, producer: Any, fut: asyncio.Future[Any]) -> None:
        self.pool.release(producer)
        # Cancelled: the caller stopped waiting (its timeout); the record is still with the
        # producer, and a gap it leaves shows as the next record's failure.
        if not fut.cancelled() and fut.exception() is not None:
            self.pool.broken(producer)
