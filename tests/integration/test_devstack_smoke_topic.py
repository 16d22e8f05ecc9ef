"""``devstack smoke``'s Kafka round trip deletes the topic it made: every run used to leave a
``nev.smoke.<8 hex>`` topic on the dev broker, whose partitions only grew."""

from __future__ import annotations

import re

import pytest

from devtools.devstack import smoke
from devtools.devstack.topics import topic_partitions

pytestmark = pytest.mark.integration


async def test_the_smoke_deletes_its_topic(kafka_bootstrap: str) -> None:
    line = await smoke._kafka(kafka_bootstrap, {})

    found = re.search(r"on (nev\.smoke\.[0-9a-f]{8}), then deleted it", line)
    assert found is not None, line
    assert found.group(1) not in await topic_partitions(kafka_bootstrap)
