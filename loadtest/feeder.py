"""The benchmarks' load side: frames built before the clock starts, then sent paced in small
time slices, one batch per topic-partition.

Why not ``devtools.loadgen_send.produce_messages``: it awaits ``AIOKafkaProducer.send`` per
record (~15-20 µs of Python each: metadata wait, size estimate, pure-Python murmur2, a future
per record) and the benchmarks generated their frames while sending; at 18,800 frames/s that
took about one of the machine's 2 cores, so a steady-state p99 measured the machine rather than
the service. Here:

- ``Feeder.build`` draws the frames (``fleet.Message``) before the clock: per frame its value,
  its key, its lane (topic-partition by Kafka's default partitioner: ``storage.shards.murmur2``
  cached per key, as ``ingest.gateway.producer`` does) and the headers after ``received_at``
  (gateway, peer, the message's own: one shared tuple per key). A vehicle frame costs ~430 B
  built, so a feed of up to ``PREBUILT_MAX`` frames (~650 MB: 80 s at 18,800/s) is built whole
  before the clock; a longer one (``scale_devices``' millions, unpaced) is built in chunks of
  that size, the later ones while sending, and their cost shows in ``cpu_us_per_frame``.
- ``Feeder.run`` wakes every ``slice_s`` (10 ms; longer below 2,500 frames/s, for ~25
  frames a slice, at most 50 ms), takes the frames due by then
  (``rate`` x elapsed), appends them to one ``create_batch`` per lane with one
  ``received_at`` header (the send time in ms, as ``produce_messages`` stamps it) and submits
  each with ``send_batch``. Acks are the producer's (the benchmarks' producers are acks=all); a
  failed batch fails the run.

What it costs (docs/performance.md, "The benchmark's feeder"): a fixed ~0.6 ms of CPU per
slice (the wake-up, the produce request and its answer in aiokafka, whatever the frames) plus
~2-4 µs per frame; 6.8 µs/frame at 20,000 frames/s, 12.6 at 7,000, 44 at 500, against 25-30,
30 and 230 µs for ``produce_messages`` sending the same pre-built frames. A 5 ms slice
doubles the fixed part (8.6 and 17.9 µs/frame); a longer one makes the load burstier.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

from devtools.loadgen_send import gateway_name, peer_of
from devtools.sim.fleet import Message
from storage.shards import murmur2

__all__ = ["PREBUILT_MAX", "FeedResult", "Feeder", "Partitioner", "by_lane", "feed"]

PREBUILT_MAX: Final = 1_500_000
SLICE_S: Final = 0.010
# At low rates a 10 ms slice holds a few frames and the fixed cost per slice is the feeder's
# whole cost (~8 % of a core at 500 frames/s): a slice is then stretched to hold ~25 frames,
# up to 50 ms (still shorter than the service's 200 ms batch linger).
_SLICE_FRAMES: Final = 25
_SLICE_MAX_S: Final = 0.050
_UNPACED_SLICE: Final = 20_000  # frames per slice when ``rate`` is 0 (as fast as acks allow)
# Per-key caches (hash, headers): a dict hit costs ~0.1 µs, murmur2 in Python ~3. Bounded like
# the gateway's (~260,000 keys), cleared when full: scale_devices feeds 3,000,000 devices.
_CACHE: Final = 1 << 18

Header = tuple[str, bytes]


@dataclass(slots=True)
class FeedResult:
    """What a feed sent and what it cost the benchmark process."""

    frames: int = 0
    rate: float = 0.0  # offered frames/s (0: unpaced)
    build_s: float = 0.0  # building the first chunk, before the clock
    send_s: float = 0.0  # clock start -> the last frame handed to the producer
    acked_s: float = 0.0  # clock start -> the last acknowledgement
    cpu_s: float = 0.0  # process CPU from the clock start to the last acknowledgement
    slices: int = 0  # time slices that sent frames
    batches: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)

    @property
    def achieved(self) -> float:
        """Frames/s handed to the producer over the sending time."""
        return self.frames / self.send_s if self.send_s > 0 else 0.0

    @property
    def cpu_us_per_frame(self) -> float:
        return self.cpu_s / self.frames * 1e6 if self.frames else 0.0

    def kept_up(self, tolerance: float = 0.02) -> bool:
        """True when the achieved rate is within ``tolerance`` of the offered one (or unpaced)."""
        return self.rate <= 0 or self.achieved >= self.rate * (1 - tolerance)

    def as_dict(self) -> dict[str, Any]:
        return {
            "feeder_frames": self.frames,
            "feeder_offered_frames_per_s": round(self.rate),
            "feeder_achieved_frames_per_s": round(self.achieved),
            "feeder_kept_up": self.kept_up(),
            "feeder_build_s": round(self.build_s, 2),
            "feeder_send_s": round(self.send_s, 2),
            "feeder_cpu_us_per_frame": round(self.cpu_us_per_frame, 2),
            # the share of one core the feed took while it ran: its fixed per-slice cost makes
            # the per-frame figure high at low rates, this one says what the service lost
            "feeder_cpu_share_of_core": round(self.cpu_s / self.acked_s, 3) if self.acked_s else 0,
            "feeder_frames_per_batch": round(self.frames / max(self.batches, 1), 1),
        }


class Partitioner:
    """Kafka's default partitioner for keyed records (``toPositive(murmur2(key))`` modulo the
    partition count, as aiokafka's ``DefaultPartitioner``), each key's hash cached."""

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes, ids: Sequence[int]) -> int:
        """The partition of ``key`` among the topic's partitions ``ids`` (sorted)."""
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= _CACHE:
                self._hashes.clear()
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return ids[h % len(ids)]


def by_lane(lanes: Sequence[int], start: int, stop: int) -> dict[int, list[int]]:
    """The frames ``start:stop`` grouped by lane, each group in send order (one batch each)."""
    out: dict[int, list[int]] = {}
    for i in range(start, stop):
        group = out.get(lanes[i])
        if group is None:
            out[lanes[i]] = [i]
        else:
            group.append(i)
    return out


class _Chunk:
    """Built frames in send order: parallel lists (a tuple per frame would add ~60 B each)."""

    __slots__ = ("keys", "lanes", "tails", "values")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.lanes: list[int] = []
        self.tails: list[tuple[Header, ...]] = []

    def __len__(self) -> int:
        return len(self.values)


class Feeder:
    """Pre-built frames for one producer, sent paced (``run``)."""

    def __init__(
        self,
        producer: Any,
        topic: str | Mapping[str, str],
        *,
        gateway: str | None = None,
        prebuilt: int = PREBUILT_MAX,
    ) -> None:
        self._producer = producer
        self._prebuilt = prebuilt  # frames built per chunk; the first chunk before the clock
        self._single, self._roles = (topic, {}) if isinstance(topic, str) else ("", dict(topic))
        self._gateway = gateway_name(gateway)
        self._partitions: dict[str, list[int]] = {}
        self._lane_ids: dict[tuple[str, int], int] = {}
        self.lanes: list[tuple[str, int]] = []  # lane index -> (topic, partition)
        self._partitioner = Partitioner()
        self._tails: dict[tuple[bytes, tuple[Header, ...]], tuple[Header, ...]] = {}

    async def lane_of(self, topic: str, key: bytes) -> int:
        """The lane (topic, partition) of a keyed record: the partition aiokafka's
        ``DefaultPartitioner`` gives the key, among the topic's partitions."""
        ids = self._partitions.get(topic)
        if ids is None:
            ids = self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        tp = (topic, self._partitioner(key, ids))
        lane = self._lane_ids.get(tp)
        if lane is None:
            lane = self._lane_ids[tp] = len(self.lanes)
            self.lanes.append(tp)
        return lane

    async def build(self, messages: Iterator[Message], limit: int) -> _Chunk:
        """Draw up to ``limit`` messages and build them for sending."""
        chunk = _Chunk()
        for msg in islice(messages, limit):
            topic = self._single or self._roles[msg.topic]
            lane = await self.lane_of(topic, msg.key)
            tail = self._tails.get((msg.key, msg.headers))
            if tail is None:
                if len(self._tails) >= _CACHE:
                    self._tails.clear()
                tail = (("gateway", self._gateway), ("peer", peer_of(msg.key)), *msg.headers)
                self._tails[msg.key, msg.headers] = tail
            chunk.keys.append(msg.key)
            chunk.values.append(msg.value)
            chunk.lanes.append(lane)
            chunk.tails.append(tail)
        return chunk

    async def run(
        self,
        messages: Iterable[Message],
        *,
        rate: float,
        max_frames: int,
        slice_s: float = SLICE_S,
        sent: Callable[[int], None] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> FeedResult:
        """Build, then send up to ``max_frames`` of ``messages`` at ``rate`` frames/s (0: as
        fast as the producer takes them); ``on_start()`` when the frames are built and the
        clock starts, ``sent(frames so far)`` after each slice."""
        result = FeedResult(rate=rate)
        source = iter(messages)
        t0 = time.monotonic()
        chunk = await self.build(source, min(max_frames, self._prebuilt))
        result.build_s = time.monotonic() - t0
        pending: set[asyncio.Future[Any]] = set()
        failed: list[BaseException] = []

        def acked(fut: asyncio.Future[Any]) -> None:
            pending.discard(fut)
            if not fut.cancelled() and fut.exception() is not None and not failed:
                failed.append(fut.exception())  # type: ignore[arg-type]

        if on_start is not None:
            on_start()
        if rate > 0:
            slice_s = max(slice_s, min(_SLICE_MAX_S, _SLICE_FRAMES / rate))
        cpu0, started = time.process_time(), time.monotonic()
        base = 0  # frames of the chunks before this one
        at = 0  # next frame of this chunk
        while at < len(chunk):
            if failed:
                raise failed[0]
            elapsed = time.monotonic() - started
            due = int(elapsed * rate) - base if rate > 0 else at + _UNPACED_SLICE
            due = min(due, len(chunk))
            if due > at:
                result.batches += await self._send(chunk, at, due, pending, acked, result)
                result.slices += 1
                at = due
                result.frames = base + at
                result.send_s = time.monotonic() - started
                if sent is not None:
                    sent(result.frames)
            if at >= len(chunk):
                if len(chunk) < self._prebuilt or result.frames >= max_frames:
                    break  # the messages or max_frames ran out
                # Past PREBUILT_MAX: the next chunk is built on the clock (and counted in CPU).
                base += len(chunk)
                chunk = await self.build(source, min(max_frames - base, self._prebuilt))
                at = 0
                continue
            if rate > 0:
                ahead = started + (base + at + 1) / rate - time.monotonic()
                await asyncio.sleep(max(ahead, slice_s))
            else:
                await asyncio.sleep(0)  # let the sender drain; send_batch paces by its waits
        while pending:
            await asyncio.wait(set(pending))
        if failed:
            raise failed[0]
        result.acked_s = time.monotonic() - started
        result.cpu_s = time.process_time() - cpu0
        return result

    async def _send(
        self,
        chunk: _Chunk,
        start: int,
        stop: int,
        pending: set[asyncio.Future[Any]],
        acked: Callable[[asyncio.Future[Any]], None],
        result: FeedResult,
    ) -> int:
        """Submit frames ``start:stop`` as one batch per lane (more when one fills); returns
        the batches submitted."""
        ms = time.time_ns() // 1_000_000
        received = ("received_at", str(ms).encode())
        keys, values, tails = chunk.keys, chunk.values, chunk.tails
        batches = 0
        for lane, idx in by_lane(chunk.lanes, start, stop).items():
            topic, partition = self.lanes[lane]
            result.by_topic[topic] += len(idx)
            n = 0
            while n < len(idx):
                batch = self._producer.create_batch()
                for i in idx[n:]:
                    headers = [received, *tails[i]]
                    if (
                        batch.append(key=keys[i], value=values[i], timestamp=ms, headers=headers)
                        is None
                    ):
                        break  # full: a batch always takes its first record
                    n += 1
                batch.close()  # ours to fill: aiokafka must neither add to it nor linger
                fut = await self._producer.send_batch(batch, topic, partition=partition)
                pending.add(fut)
                fut.add_done_callback(acked)
                batches += 1
        return batches


async def feed(
    producer: Any,
    topic: str | Mapping[str, str],
    messages: Iterable[Message],
    *,
    rate: float,
    max_frames: int,
    sent: Callable[[int], None] | None = None,
    on_start: Callable[[], None] | None = None,
) -> FeedResult:
    """Send ``messages`` with gateway headers at ``rate`` frames/s (``Feeder.run``);
    ``topic``: one topic for all, or the topic of each message's role."""
    feeder = Feeder(producer, topic)
    return await feeder.run(
        messages, rate=rate, max_frames=max_frames, sent=sent, on_start=on_start
    )
