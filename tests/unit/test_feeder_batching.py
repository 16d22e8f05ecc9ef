"""The benchmark feeder's routing and batching (``loadtest.feeder``): a key goes to the
partition aiokafka's ``DefaultPartitioner`` (what ``send`` uses) gives it, and a slice's frames
are grouped one batch per lane, each group in send order, every frame once."""

from __future__ import annotations

import random

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.sim.fleet import vin_of
from loadtest.feeder import Partitioner, by_lane

pytestmark = pytest.mark.unit


def test_device_keys_go_where_send_puts_them() -> None:
    rng = random.Random(12)
    keys = [vin_of(i, "LNEVBEN").encode() for i in range(3_000)]
    keys += [rng.randbytes(rng.randrange(1, 24)) for _ in range(500)]
    for partitions in (1, 3, 12, 36):
        ids = list(range(partitions))
        partitioner = Partitioner()
        expected = [DefaultPartitioner()(k, ids, ids) for k in keys]
        assert [partitioner(k, ids) for k in keys] == expected
        assert [partitioner(k, ids) for k in keys] == expected  # again, from the cache
        if partitions > 1:
            assert len(set(expected)) == partitions


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 7), max_size=300), st.data())
def test_a_slice_is_one_group_per_lane_in_order(lanes: list[int], data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(lanes)))
    stop = data.draw(st.integers(start, len(lanes)))
    groups = by_lane(lanes, start, stop)
    assert sorted(i for g in groups.values() for i in g) == list(range(start, stop))
    for lane, group in groups.items():
        assert group == sorted(group)  # a partition's frames leave in send order
        assert all(lanes[i] == lane for i in group)


async def test_a_full_batch_refuses_the_next_frame() -> None:
    """The feeder relies on a real aiokafka batch taking records until ``max_batch_size``
    and then answering None (it starts the next batch there)."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=4096)
    try:
        batch = producer.create_batch()  # no connection: batches are built in memory
        value = bytes(300)
        took = 0
        while batch.append(key=b"k", value=value, timestamp=1, headers=[("received_at", b"1")]):
            took += 1
        assert 5 <= took <= 13  # 4 KiB of ~310-byte records
        batch.close()
        assert batch.append(key=b"k", value=value, timestamp=1, headers=[]) is None
    finally:
        await producer.stop()  # never started: only marks it closed
