"""The pinned aiokafka against the pinned Kafka broker: produce, consume in a group, commit,
rebalance. If this passes, docs/development.md's compatibility statement holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

pytestmark = pytest.mark.integration

PARTITIONS = 4
PER_PARTITION = 10
WAIT_S = 60.0  # generous upper bound for a loaded 2-core CI machine; never a sleep


class Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.assigned: set[int] = set()
        self.generations = 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.assigned -= {tp.partition for tp in revoked}

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned |= {tp.partition for tp in assigned}
        self.generations += 1


async def _produce(bootstrap: str, topic: str, round_: int) -> set[bytes]:
    sent: set[bytes] = set()
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
        for partition in range(PARTITIONS):
            for i in range(PER_PARTITION):
                value = f"r{round_}-p{partition}-{i}".encode()
                await producer.send_and_wait(topic, value, key=b"k", partition=partition)
                sent.add(value)
    return sent


def _consumer(bootstrap: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,  # the pipeline commits only after rows are durable
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
        heartbeat_interval_ms=500,
    )


async def _drain(
    consumers: list[AIOKafkaConsumer], want: int, seen: list[tuple[int, int, bytes]]
) -> None:
    """Fetch from every consumer until ``want`` records arrived in total."""
    async with asyncio.timeout(WAIT_S):
        while len(seen) < want:
            for index, consumer in enumerate(consumers):
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    seen.extend((index, r.partition, r.value) for r in records)


async def test_group_consume_commit_and_rebalance(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = unique_topic(partitions=PARTITIONS)
    group = unique_name("group")
    first_round = await _produce(kafka_bootstrap, topic, 1)

    alone = _consumer(kafka_bootstrap, group)
    listener_a = Assignments()
    await alone.start()
    try:
        alone.subscribe([topic], listener=listener_a)
        seen: list[tuple[int, int, bytes]] = []
        await _drain([alone], len(first_round), seen)
        assert {value for _, _, value in seen} == first_round
        assert listener_a.assigned == set(range(PARTITIONS))
        await alone.commit()
        for partition in range(PARTITIONS):
            tp = TopicPartition(topic, partition)
            assert await alone.committed(tp) == PER_PARTITION

        # A second member joins: the group rebalances and splits the partitions. Nothing new
        # is produced yet, so any record fetched now would be a redelivery of round 1.
        joiner = _consumer(kafka_bootstrap, group)
        listener_b = Assignments()
        await joiner.start()
        try:
            joiner.subscribe([topic], listener=listener_b)
            async with asyncio.timeout(WAIT_S):
                while not (listener_a.assigned and listener_b.assigned):
                    for consumer in (alone, joiner):
                        redelivered = await consumer.getmany(timeout_ms=200)
                        assert not any(redelivered.values()), "committed records came back"
            # Disjoint halves covering every partition: a real rebalance happened.
            assert listener_a.assigned.isdisjoint(listener_b.assigned)
            assert listener_a.assigned | listener_b.assigned == set(range(PARTITIONS))
            assert listener_a.generations >= 2

            second_round = await _produce(kafka_bootstrap, topic, 2)
            seen_after: list[tuple[int, int, bytes]] = []
            await _drain([alone, joiner], len(second_round), seen_after)
            # Each record once, from the member that owns its partition.
            assert sorted(value for _, _, value in seen_after) == sorted(second_round)
            owners = (listener_a.assigned, listener_b.assigned)
            assert all(partition in owners[index] for index, partition, _ in seen_after)
            await alone.commit()
            await joiner.commit()
        finally:
            await joiner.stop()
    finally:
        await alone.stop()

    check = _consumer(kafka_bootstrap, group)
    await check.start()
    try:
        for partition in range(PARTITIONS):
            committed = await check.committed(TopicPartition(topic, partition))
            assert committed == 2 * PER_PARTITION
    finally:
        await check.stop()
