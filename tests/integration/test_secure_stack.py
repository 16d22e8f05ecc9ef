"""The service over SASL_SSL (SCRAM-SHA-512) and PostgreSQL TLS (verify-full, scram-sha-256) on
a secure dev stack of the module's own: frames become rows once, bad frames reach the DLQ, the
alert is published, offsets are committed; wrong credentials, an untrusted CA, a wrong host
name and a client without TLS stop ``nev-ingest run`` with one line naming the setting to fix;
the ACLs hold."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError

from devtools.devstack import kafka_secure as ks
from devtools.devstack import tls
from ingest.config.load import load_settings
from ingest.errors import UserError
from ingest.wiring import check_topics
from tests.integration import pipeline_support as ps
from tests.integration import secure_support as ss
from tests.integration.secure_support import SecureStack
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    stack = SecureStack(tmp_path_factory.mktemp("secure"))
    try:
        yield stack
    finally:
        stack.stop()


async def test_service_end_to_end_over_sasl_ssl_and_postgres_tls(
    secure: SecureStack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    database = unique_name("sec")
    await secure.new_database(database)
    env = secure.env(database, tmp_path, unique_name(ss.GROUP_PREFIX))
    messages = recent_fleet(20, 3, bad_ratio=0.05, runaway=True)
    expected = ps.Expected.of(messages)
    assert sum(expected.bad.values()) > 0, "the traffic must hold bad frames"

    async with ps.serving(env, "secure"):
        # The gateways' user produces; the service's user consumes and writes.
        sent = await ss.produce(secure, ks.GATEWAY, env.topic, messages)
        assert sent.frames == len(messages)
        await ps.until(
            lambda: ss.caught_up(secure, database, env.group, env.topic),
            timeout_s=90,
            what="every offset committed with its rows",
        )
        n_bad = sum(expected.bad.values())
        dead = await ss.read_topic(secure, ks.TOOLS, env.dlq, expect=n_bad)
        alerts = await ss.read_topic(secure, ks.TOOLS, env.alerts, expect=1)

    conn = await secure.connect_service(database)
    try:
        rows = await conn.fetch(
            f"SELECT vin, (extract(epoch FROM ts) * 1000)::bigint AS ms "
            f"FROM {ps.SCHEMA}.vehicle_telemetry"
        )
        # The service's own connection is encrypted, not only this one.
        ssl_used = await conn.fetchval(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
            "WHERE a.usename = 'nev_service'"
        )
    finally:
        await conn.close()
    assert Counter((r["vin"], r["ms"]) for r in rows) == expected.rows
    assert ssl_used is True
    reasons = Counter((ps.header(r.headers, "error.reason") or b"").decode() for r in dead)
    assert reasons == expected.bad
    raised = [orjson.loads(r.value) for r in alerts]
    assert any(a["type"] == "raised" and a["entity_id"] == "LNEVSIM0000000000" for a in raised)


def _run_service(env: ps.PipelineEnv, **overrides: str) -> subprocess.CompletedProcess[str]:
    # timeout: a guard against a hang (the failure under test), not a timing assertion.
    return subprocess.run(
        [sys.executable, "-m", "ingest", "run", "--workers", "1"],
        env=env.environ(**overrides),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "setting", "why"),
    [
        ("kafka_password", "kafka.sasl_password", "refused the SASL login of 'nev-service'"),
        ("kafka_ca", "kafka.ssl_cafile", "certificate is not trusted"),
        ("kafka_host", "kafka.bootstrap_servers", "not valid for 'localhost'"),
        ("postgres_password", "postgres.password", "password authentication failed"),
        ("postgres_ca", "postgres.sslrootcert", "certificate is not trusted"),
        ("postgres_host", "postgres.dsn", "not valid for 'localhost'"),
        # Nothing is served unencrypted: no plaintext listener, pg_hba takes hostssl only.
        ("kafka_plaintext", "kafka.security_protocol", "expects TLS"),
        ("postgres_plaintext", "postgres.sslmode", "requires TLS"),
    ],
)
def test_bad_credentials_or_certificates_stop_run_with_one_line(
    secure: SecureStack,
    case: str,
    setting: str,
    why: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    env = secure.env("nev", tmp_path, unique_name(ss.GROUP_PREFIX))
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    other_ca = tls.make_ca(tmp_path / "other-ca", "another CA").cert  # trusted by nobody here
    overrides = {
        "kafka_password": {"NEV_KAFKA_SASL_PASSWORD_FILE": str(wrong)},
        "kafka_ca": {"NEV_KAFKA_SSL_CAFILE": str(other_ca)},
        # The certificate names 127.0.0.1 only: localhost reaches the same broker, wrong name.
        "kafka_host": {"NEV_KAFKA_BOOTSTRAP_SERVERS": f"localhost:{secure.kafka.port}"},
        "postgres_password": {"NEV_POSTGRES_PASSWORD_FILE": str(wrong)},
        "postgres_ca": {"NEV_POSTGRES_SSLROOTCERT": str(other_ca)},
        "postgres_host": {"NEV_POSTGRES_DSN": env.dsn.replace("127.0.0.1", "localhost")},
        "kafka_plaintext": {"NEV_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
        "postgres_plaintext": {"NEV_POSTGRES_SSLMODE": "disable"},
    }[case]
    result = _run_service(env, **overrides)
    assert result.returncode == 2, result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert setting in errors[0] and why in errors[0], errors[0]
    assert "Traceback" not in result.stderr


async def test_acls_gateway_writes_raw_and_dead_letters_service_cannot_write_raw(
    secure: SecureStack,
) -> None:
    raw = "nev.vehicle.raw"
    # The gateway's own start check, as nev-gateway: every topic it sends to may be described
    # (one it may not is refused, test_a_topic_the_user_may_not_describe_is_not_called_missing).
    env = {
        "NEV_KAFKA_BOOTSTRAP_SERVERS": secure.bootstrap,
        **ks.settings_env(secure.files, ks.GATEWAY),
    }
    kafka = load_settings(environ=env).kafka
    await check_topics(kafka, {"nev.dlq": "kafka.topic_dlq", raw: "kafka.topic_vehicle"}, 30)
    # The gateway may produce to a raw topic (control: the ACLs are not simply deny-all) and
    # its dead letters (the frames it refuses) ...
    gateway = AIOKafkaProducer(**secure.kafka_options(ks.GATEWAY))
    await gateway.start()
    try:
        await gateway.send_and_wait(raw, b"gateway frame")
        await gateway.send_and_wait("nev.dlq", b"a frame the gateway refused")
        with pytest.raises(TopicAuthorizationFailedError):
            await gateway.send_and_wait("nev.alerts", b"forged alert")
    finally:
        await gateway.stop()
    # ... but not read one,
    reader = AIOKafkaConsumer(**secure.kafka_options(ks.GATEWAY))
    await reader.start()
    try:
        reader.assign([TopicPartition(raw, 0), TopicPartition(raw, 1)])
        await reader.seek_to_beginning()
        with pytest.raises(TopicAuthorizationFailedError):
            await reader.getmany(timeout_ms=10000)
    finally:
        await reader.stop()
    # and the service may not produce to a raw topic (only dead letters and alerts).
    service = AIOKafkaProducer(**secure.kafka_options(ks.SERVICE))
    await service.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await service.send_and_wait(raw, b"service frame")
        await service.send_and_wait("nev.dlq", b"a dead letter")
    finally:
        await service.stop()


async def test_the_gateway_user_reads_the_size_of_every_topic_it_sends_to(
    secure: SecureStack, caplog: pytest.LogCaptureFixture
) -> None:
    # The gateway's start check compares each topic's max.message.bytes with the largest batch
    # it sends there. Its user could not read topic configs (no DESCRIBE_CONFIGS): the check
    # found no limit and passed in silence, whatever the topic's size.
    topics = {
        "nev.vehicle.raw": "kafka.topic_vehicle",
        "nev.charger.raw": "kafka.topic_charger",
        "nev.battery.raw": "kafka.topic_battery",
        "nev.charger.tcec": "kafka.topic_tcec",
        "nev.dlq": "kafka.topic_dlq",
    }
    env = {"NEV_KAFKA_BOOTSTRAP_SERVERS": secure.bootstrap}
    gateway = load_settings(environ=env | ks.settings_env(secure.files, ks.GATEWAY)).kafka
    for name in topics:  # a batch no topic takes: refused, so the limit was read
        with pytest.raises(UserError, match=f"Kafka topic {name} takes at most"):
            await check_topics(gateway, topics, 30, sizes={name: (1 << 40, "a setting")})
    # A user that may not (the tools'): the check is not made, and a WARNING says which topic.
    # Both topics in one request, each refused on its own and each named.
    tools = load_settings(environ=env | ks.settings_env(secure.files, ks.TOOLS)).kafka
    raw = {"nev.vehicle.raw": "kafka.topic_vehicle", "nev.battery.raw": "kafka.topic_battery"}
    with caplog.at_level(logging.WARNING, logger="ingest.wiring"):
        await check_topics(tools, raw, 30, sizes=dict.fromkeys(raw, (1 << 40, "a setting")))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in raw:
        expected = f"max.message.bytes of Kafka topic {name} (grant User:nev-tools DESCRIBE_CONFIGS"
        assert any(expected in m for m in warned), warned


async def test_a_topic_the_user_may_not_describe_is_not_called_missing(
    secure: SecureStack,
) -> None:
    # The start check listed the topics and called one absent from the list missing; the list
    # leaves out what the user may not describe, so an operator was told to create a topic
    # that existed. The broker answers TOPIC_AUTHORIZATION_FAILED for it: say that, and whom
    # to grant what.
    env = {"NEV_KAFKA_BOOTSTRAP_SERVERS": secure.bootstrap}
    gateway = load_settings(environ=env | ks.settings_env(secure.files, ks.GATEWAY)).kafka
    topics = {"nev.dlq": "kafka.topic_dlq", "nev.alerts": "kafka.topic_alerts"}  # alerts: no ACL
    with pytest.raises(UserError) as caught:
        await check_topics(gateway, topics, 30)
    message = str(caught.value)
    expected = "Kafka topic 'nev.alerts' (kafka.topic_alerts): User:nev-gateway is not authorized"
    assert message.startswith(expected), message
    assert "grant DESCRIBE on topic nev.alerts to User:nev-gateway" in message, message
    assert "does not exist" not in message and "create it" not in message, message
    # A user that may describe it finds it (control: the topic is there).
    tools = load_settings(environ=env | ks.settings_env(secure.files, ks.TOOLS)).kafka
    await check_topics(tools, {"nev.alerts": "kafka.topic_alerts"}, 30)
