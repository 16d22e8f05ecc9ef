"""Help texts that must not promise what the code does not do."""

from __future__ import annotations

import dataclasses

import pytest

from ingest.config import KafkaSettings
from ingest.config.fields import spec_of

pytestmark = pytest.mark.unit

HELP = {f.name: spec_of(f).help for f in dataclasses.fields(KafkaSettings)}


@pytest.mark.parametrize("key", ["replication_factor", "dlq_partitions", "alerts_partitions"])
def test_topic_creation_keys_say_only_the_dev_stack_creates_topics(key: str) -> None:
    # nev-ingest checks that its topics exist; only `devstack up` creates any.
    assert "nev-ingest never creates topics" in HELP[key]
    assert "nev-ingest creates" not in HELP[key]


def test_partitions_says_it_must_match_the_topics() -> None:
    # `query` routes an entity to its shard by kafka.partitions (storage.shards).
    assert "must equal the raw topics' real partition count" in HELP["partitions"]
    assert "nev-ingest query" in HELP["partitions"]
