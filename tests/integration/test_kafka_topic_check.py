"""The start check of the topics (``ingest.wiring.check_topics``) against the dev broker: a
missing topic is named with its key and not created by the check (its Metadata request says
so to the broker); the sizes of several topics are read in one request, each judged on its
own. (A topic the user may not describe: tests/integration/test_secure_stack.py, whose broker
has ACLs.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.metadata import MetadataRequest

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
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The check asks for the topics by name without letting the broker create them (a broker
    # with auto.create.topics.enable would create a misspelt one at every start otherwise).
    # The dev broker never creates a topic a Metadata request names, even when asked to, so
    # "not created" alone proves nothing: the Metadata requests the check sends are kept, as
    # the connection encodes them for the broker (its negotiated version), and read.
    sent: list[Any] = []
    send = AIOKafkaAdminClient._send_request

    async def kept(self: AIOKafkaAdminClient, request: Any, *args: Any) -> Any:
        if isinstance(request, MetadataRequest):
            prepare = request.prepare

            def prepared(versions: dict[int, tuple[int, int]]) -> Any:
                struct = prepare(versions)
                sent.append(struct)
                return struct

            request.prepare = prepared
        return await send(self, request, *args)  # the real broker answers

    monkeypatch.setattr(AIOKafkaAdminClient, "_send_request", kept)
    there, missing = unique_topic(), unique_name("missing")
    topics = {there: "kafka.topic_dlq", missing: "kafka.topic_alerts"}
    with pytest.raises(UserError) as caught:
        await check_topics(_kafka(kafka_bootstrap), topics, 30)
    assert str(caught.value).startswith(
        f"Kafka topic {missing!r} (kafka.topic_alerts) does not exist"
    ), caught.value
    asked = [s for s in sent if missing in (s.topics or ())]
    assert asked, sent
    # Metadata v4 and later carry the flag (the dev broker speaks v5); an older request for a
    # name could not refuse creation, so the check must not fall back to one
    assert [(s.API_VERSION >= 4, s.allow_auto_topic_creation) for s in asked] == [
        (True, False)
    ] * len(asked), asked
    assert missing not in await _topics(kafka_bootstrap)  # and this broker did not, either
    await check_topics(_kafka(kafka_bootstrap), {there: "kafka.topic_dlq"}, 30)


async def test_every_missing_topic_is_named_in_one_error(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    # Named one at a time, an operator created the first, restarted, and met the second.
    there, alerts, dlq = unique_topic(), unique_name("alerts"), unique_name("dlq")
    topics = {there: "kafka.topic_vehicle", alerts: "kafka.topic_alerts", dlq: "kafka.topic_dlq"}
    with pytest.raises(UserError) as caught:
        await check_topics(_kafka(kafka_bootstrap), topics, 30, dlq_topic=dlq)
    summary, *lines = str(caught.value).splitlines()
    assert summary == "2 Kafka topics are not usable; fix each of them:", caught.value
    # one line per topic, each the message a lone missing topic gets (with what to do)
    assert len(lines) == 2, caught.value
    assert lines[0].startswith(f"  - Kafka topic {alerts!r} (kafka.topic_alerts) does not exist")
    assert lines[1].startswith(f"  - Kafka topic {dlq!r} (kafka.topic_dlq) does not exist")
    assert all("create it (" in line for line in lines), caught.value


async def _topic_of_size(bootstrap: str, name: str, max_message_bytes: int) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)}
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=config)])
    finally:
        await admin.close()
    return name


async def test_the_sizes_of_several_topics_are_read_in_one_request(
    kafka_bootstrap: str, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gateway checks up to five topics' max.message.bytes at its start; it asked one topic
    # per request. Count the DescribeConfigs requests (the real broker answers them).
    small, large, dlq = [
        await _topic_of_size(kafka_bootstrap, unique_name(what), size)
        for what, size in (("small", 100_000), ("large", 3_000_000), ("dlq", 2_000_000))
    ]
    requests: list[int] = []
    describe = AIOKafkaAdminClient.describe_configs

    async def counted(self: AIOKafkaAdminClient, resources: list[Any], *args: Any) -> Any:
        requests.append(len(resources))
        return await describe(self, resources, *args)

    monkeypatch.setattr(AIOKafkaAdminClient, "describe_configs", counted)
    kafka = _kafka(kafka_bootstrap)
    topics = {small: "kafka.topic_vehicle", large: "kafka.topic_battery", dlq: "kafka.topic_dlq"}
    sizes = {small: (200_000, "a small setting"), large: (2_500_000, "a large setting")}
    with pytest.raises(UserError) as caught:
        await check_topics(kafka, topics, 30, dlq_topic=dlq, sizes=sizes)
    # the topic too small is named, with its own limit; the others pass on theirs
    assert str(caught.value).startswith(
        f"Kafka topic {small} takes at most 100000 bytes (max.message.bytes) but gets batches "
        "of up to 200000 bytes (a small setting)"
    ), caught.value
    assert requests == [3], requests
    sizes[small] = (100_000, "a small setting")
    said = await check_topics(kafka, topics, 30, dlq_topic=dlq, sizes=sizes)
    assert said.endswith(f"{dlq} takes 2000000 bytes"), said


async def test_a_missing_topic_and_one_too_small_are_named_together(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The sizes of the topics that exist are still read when another one is missing.
    small = await _topic_of_size(kafka_bootstrap, unique_name("small"), 100_000)
    missing = unique_name("missing")
    topics = {missing: "kafka.topic_charger", small: "kafka.topic_vehicle"}
    sizes = {small: (200_000, "a small setting"), missing: (1_000, "a setting")}
    with pytest.raises(UserError) as caught:
        await check_topics(_kafka(kafka_bootstrap), topics, 30, sizes=sizes)
    summary, *lines = str(caught.value).splitlines()
    assert summary == "2 Kafka topics are not usable; fix each of them:", caught.value
    assert len(lines) == 2, caught.value
    assert lines[0].startswith(f"  - Kafka topic {missing!r} (kafka.topic_charger) does not exist")
    assert lines[0].endswith("or fix kafka.topic_charger"), caught.value
    assert lines[1:] == [
        f"  - Kafka topic {small} takes at most 100000 bytes (max.message.bytes) but gets batches "
        "of up to 200000 bytes (a small setting): raise the topic's max.message.bytes to at "
        "least 200000 (kafka-configs.sh --alter --add-config max.message.bytes=200000) or "
        "lower a small setting",
    ], caught.value
