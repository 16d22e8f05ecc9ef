"""The fixed map from Kafka partitions to database shards, and Kafka's key -> partition hash.

Partition ``p`` of every raw topic belongs to shard ``p % N`` (N = len(storage.shards); one
database when N is 0 or 1). The worker writes a partition's rows, latest state, alerts and
consumer offsets to that shard only, so the map may change only by the procedure in
docs/storage.md (stop, drain, re-map, ``migrate --reshard``): a partition moved without its
offsets resumes from Kafka's committed offset on a shard without its history. ``run`` and
``migrate`` refuse a map the databases contradict (``storage.shard_map``).

``kafka_partition`` is the Java client's default partitioner (murmur2 of the key bytes, sign
bit cleared, modulo the partition count), which aiokafka's ``DefaultPartitioner`` implements
too, so ``nev-ingest query`` finds an entity's shard from its key without asking Kafka.
"""

from __future__ import annotations

from typing import Final

__all__ = ["kafka_partition", "murmur2", "shard_of", "shard_of_key"]

_M: Final = 0x5BD1E995
_SEED: Final = 0x9747B28C
_MASK32: Final = 0xFFFFFFFF


def shard_of(partition: int, n: int) -> int:
    """The shard index (0..n-1) that owns Kafka partition ``partition``; 0 with no shards."""
    if partition < 0:
        raise ValueError(f"partition {partition} is negative; Kafka partitions start at 0")
    if n <= 1:
        return 0
    return partition % n


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) as an unsigned 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = (h * _M) & _MASK32
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record (``toPositive(murmur2)``
    modulo the topic's partition count)."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def shard_of_key(key: bytes, partitions: int, n: int) -> int:
    """The shard that holds the rows of the entity keyed ``key`` on a topic of ``partitions``."""
    return shard_of(kafka_partition(key, partitions), n)
