"""The start check of the topics (``ingest.wiring.check_topics``) against the dev broker: a
missing topic is named with its key and not created by the check. (A topic the user may not
describe: tests/integration/test_secure_stack.py, whose broker has ACLs.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from ingest.config.load import load_settings
from ingest.config.settings import KafkaSettings
from ingest.errors import UserError
from ingest.wiring import check_topics

pytestmark = pytest.mark.integration


def _kafka(bootstrap: str) -> KafkaSettings:
    return load_settings(environ={"NEV_KAFKA_BOOTSTRAP_SERVERS": bootstrap}).kafka


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_missing_topic_is_named_with_its_key_and_not_created(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    there, missing = unique_topic(), unique_name("missing")
    topics = {there: "kafka.topic_dlq", missing: "kafka.topic_alerts"}
    with pytest.raises(UserError) as caught:
        await check_topics(_kafka(kafka_bootstrap), topics, 30)
    assert str(caught.value).startswith(
        f"Kafka topic {missing!r} (kafka.topic_alerts) does not exist"
    ), caught.value
    # The check asks for the topics by name without letting the broker create them (a broker
    # with auto.create.topics.enable would create a misspelt one at every start otherwise).
    assert missing not in await _topics(kafka_bootstrap)
    await check_topics(_kafka(kafka_bootstrap), {there: "kafka.topic_dlq"}, 30)
