"""The gateway's batches go to the partition aiokafka's ``send`` would choose: its murmur2
(``storage.shards.kafka_partition``) equals aiokafka's ``DefaultPartitioner`` for any key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.sim import identities
from storage.shards import kafka_partition

pytestmark = pytest.mark.unit


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 256))
def test_any_key_any_partition_count(key: bytes, partitions: int) -> None:
    ids = list(range(partitions))
    assert kafka_partition(key, partitions) == DefaultPartitioner()(key, ids, ids)


def test_device_identities_on_common_partition_counts() -> None:
    rng = random.Random(14)
    keys = [identities.vin(3, i).encode() for i in range(2_000)]
    keys += [rng.randbytes(rng.randrange(0, 24)) for _ in range(500)]
    for partitions in (1, 3, 6, 12, 24, 48, 100):
        ids = list(range(partitions))
        got = [kafka_partition(k, partitions) for k in keys]
        assert got == [DefaultPartitioner()(k, ids, ids) for k in keys]
        if partitions > 1:
            assert len(set(got)) == partitions  # the keys spread over every partition
