"""Settings -> client parameters, for everyone: Kafka client options, the PostgreSQL DSN and
session settings, the storage layer's typed parameters (pool, schema and policies, writer), and
the start-up checks that the services answer.

The pipeline, the commands and the dev tools all build their clients from here, so every client
gets the same security settings; the library layers (``storage``, ``alerts``) take the
resulting plain, typed parameters and never read ``Settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from ingest.config import KafkaSettings, PostgresSettings, Settings
from ingest.config.fields import mask_dsn
from ingest.errors import UserError
from ingest.transport_errors import (
    TOPIC_AUTHORIZATION_FAILED,
    UNKNOWN_TOPIC,
    kafka_hint,
    postgres_hint,
    topic_problem,
    topics_report,
)
from storage import (
    Dedupe,
    LoaderKind,
    PlainParams,
    PoolParams,
    SchemaMode,
    StorageParams,
    TimescaleParams,
    WriterParams,
)
from storage.params import TELEMETRY_TABLES
from storage.sizing import FleetProfile, busy_tables

log = logging.getLogger(__name__)


def kafka_client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments common to aiokafka's producer, consumer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "request_timeout_ms": kafka.request_timeout_ms,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile or None,
            certfile=kafka.ssl_certfile or None,
            keyfile=kafka.ssl_keyfile or None,
            password=kafka.ssl_key_password or None,
        )
    return options


def postgres_dsn(pg: PostgresSettings) -> str:
    """``postgres.dsn`` with the TLS keys added as libpq query parameters (asyncpg and psycopg
    both read them). A key already in the URL wins. The password is NOT added: pass
    ``pg.password or None`` as the driver's ``password`` argument so it never sits in a URL."""
    # Split by hand, not by urlsplit: rebuilding the URL drops the // of an empty host
    # (postgresql:///nev?host=/run/postgresql), which libpq then refuses; and libpq reads a #
    # as part of a value where urlsplit would cut a fragment.
    base, _, query = pg.dsn.partition("?")
    extra = {
        "sslmode": pg.sslmode,
        "sslrootcert": pg.sslrootcert,
        "sslcert": pg.sslcert,
        "sslkey": pg.sslkey,
    }

    def key(item: str) -> str:
        return unquote(item.partition("=")[0])

    # The URL's own items stay as written: decoding and encoding them again changes what the
    # drivers read (a + is a + to libpq and a space to asyncpg, %20 a space to both). Empty
    # items (a trailing &) both drivers refuse, and a TLS key given blank (sslmode=) gets the
    # setting's value, as they did before.
    items = [
        item
        for item in query.split("&")
        if item and not (key(item) in extra and not item.partition("=")[2])
    ]
    present = {key(item) for item in items}
    added = [(name, value) for name, value in extra.items() if value and name not in present]
    items += [urlencode([pair], quote_via=quote) for pair in added]
    return f"{base}?{'&'.join(items)}" if items else base


async def check_kafka(kafka: KafkaSettings, timeout_s: float) -> str:
    """Connect to the brokers and describe the cluster; a one-line ``UserError`` if none answers."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**kafka_client_options(kafka))
    try:
        with quiet_aiokafka():
            async with asyncio.timeout(timeout_s):
                await admin.start()
                cluster = await admin.describe_cluster()
    except (TimeoutError, OSError, KafkaError) as exc:
        if hint := await kafka_hint(kafka_client_options(kafka), timeout_s):  # TLS/SASL cause
            raise UserError(hint) from None
        raise UserError(
            f"kafka.bootstrap_servers = {kafka.bootstrap_servers}: no broker answered within "
            f"{timeout_s:g}s ({exc or type(exc).__name__}); "
            f"{unreachable_kafka(kafka.bootstrap_servers)} or fix NEV_KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    finally:
        await admin.close()
    brokers = cluster.get("brokers", [])
    return f"kafka: {len(brokers)} broker(s), cluster {cluster.get('cluster_id')}"


def databases(settings: Settings, *, reads: bool = False) -> list[tuple[str, PostgresSettings]]:
    """(the setting that names it, its connection settings) of every database the service
    writes: each shard of ``storage.shards``, or ``postgres.dsn`` without shards. With
    ``reads``, also the ones ``nev-ingest query`` reads: ``storage.query_dsn`` and each of
    ``storage.replicas``. Password and TLS come from ``postgres.*`` for all of them."""
    pg, st = settings.postgres, settings.storage
    out = [
        (f"storage.shards[{i}]", dataclasses.replace(pg, dsn=d)) for i, d in enumerate(st.shards)
    ]
    if not out:
        out = [("postgres.dsn", pg)]
    if reads:
        if st.query_dsn:
            out.append(("storage.query_dsn", dataclasses.replace(pg, dsn=st.query_dsn)))
        replicas = enumerate(st.replicas)
        out += [(f"storage.replicas[{i}]", dataclasses.replace(pg, dsn=d)) for i, d in replicas]
    return out


def first_line(exc: BaseException) -> str:
    """The first line of what ``exc`` says (its type's name when it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unreachable_database(dsn: str) -> str:
    """What to do about a database nobody answers at: start the dev stack only when ``dsn`` is
    where the dev stack listens (this machine: loopback or a Unix socket); anywhere else that
    advice is wrong (a production server is not started with ``devstack up``)."""
    try:
        host = urlsplit(dsn).hostname or ""
    except ValueError:  # not a URL the way urlsplit reads it: say nothing of the dev stack
        host = "?"
    if not host or host.startswith("/") or _is_loopback(host):
        return "start the dev stack (nev-ingest devstack up)"
    return f"check that the server at {host} is up and reachable from here (port, firewall, DNS)"


def _is_loopback(host: str) -> bool:
    """This machine, where the dev stack listens (a name other than localhost may be anywhere)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name, not an address
        return False


def _broker_host(server: str) -> str:
    """The host of one bootstrap server, read as aiokafka reads it (``get_ip_port_afi``):
    ``[v6]`` or ``[v6]:port``; a host alone (the default port); a bare IPv6 address, which takes
    no port (``::1`` is the address ::1, not host ``::`` and port 1); else ``host:port``."""
    if server.startswith("["):
        return server[1:].partition("]")[0]
    if ":" not in server:
        return server
    try:
        ipaddress.IPv6Address(server)
    except ValueError:
        return server.rpartition(":")[0]
    return server


def _dev_kafka(bootstrap_servers: str) -> bool:
    """Every bootstrap server is on this machine, where the dev stack's broker listens."""
    hosts = [_broker_host(s.strip()) for s in bootstrap_servers.split(",") if s.strip()]
    return bool(hosts) and all(_is_loopback(h) for h in hosts)


def unreachable_kafka(bootstrap_servers: str) -> str:
    """What to do about brokers nobody answers at: start the dev stack only when they are
    where it listens (this machine); a production cluster is not started with ``devstack up``,
    and that advice sent its operators the wrong way."""
    if _dev_kafka(bootstrap_servers):
        return (
            'start the dev stack (nev-ingest devstack up, then eval "$(nev-ingest devstack env)")'
        )
    return (
        f"check that the brokers of kafka.bootstrap_servers ({bootstrap_servers}) are up and "
        "reachable from here (port, firewall, DNS, the brokers' advertised listeners)"
    )


def create_topic_advice(bootstrap_servers: str, name: str) -> str:
    """How to create a missing topic: the dev stack creates the configured ones; anywhere else,
    Kafka's own tool (docs/kafka.md, "Topics are created on purpose")."""
    tool = f"kafka-topics.sh --create --topic {name} --partitions <n> --replication-factor <r>"
    if _dev_kafka(bootstrap_servers):
        return f"nev-ingest devstack up creates the configured topics; else {tool}"
    return tool


async def check_postgres(pg: PostgresSettings, timeout_s: float, key: str = "postgres.dsn") -> str:
    """Connect and ask the server version; a one-line ``UserError`` if it does not answer.
    ``key``: the setting that names ``pg.dsn`` (``databases``), for the messages."""
    import asyncpg

    fix = "NEV_POSTGRES_DSN" if key == "postgres.dsn" else key  # where to fix the URL
    try:
        conn = await asyncpg.connect(
            postgres_dsn(pg), password=pg.password or None, timeout=timeout_s
        )
    except asyncpg.ClientConfigurationError as exc:
        # The driver refused the URL before connecting (an option of its query it does not
        # take, e.g. ssl_min_protocol_version=SSLv3): not the server's fault, so no "start the
        # dev stack".
        raise UserError(
            f"{key} = {mask_dsn(pg.dsn)}: the driver refuses the URL ({first_line(exc)}); fix "
            f"or remove that option of the URL's query in {fix}"
        ) from None
    except asyncpg.InterfaceError as exc:
        # Any other: the server answered something the driver cannot go on with (an
        # authentication method it does not implement, e.g. kerberosv5; not PostgreSQL's
        # protocol). Nothing of the URL's query is to blame.
        raise UserError(
            f"cannot connect to {key} = {mask_dsn(pg.dsn)} ({type(exc).__name__}: "
            f"{first_line(exc)}); check that it is a PostgreSQL server whose pg_hba.conf "
            "gives this user a method the driver supports (scram-sha-256, md5, password), or "
            f"fix {fix}"
        ) from None
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        if hint := postgres_hint(exc, urlsplit(pg.dsn).hostname or "", key):  # TLS/login
            # a shard's or replica's hint names its setting (some hints do so themselves)
            named = key == "postgres.dsn" or key in hint
            raise UserError(hint if named else f"{key}: {hint}") from None
        raise UserError(
            f"{key} = {mask_dsn(pg.dsn)}: cannot connect ({type(exc).__name__}: {exc}); "
            f"{unreachable_database(pg.dsn)} or fix {fix}"
        ) from None
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    where = "" if key == "postgres.dsn" else f" ({key})"
    return f"postgres{where}: server {version}"


async def check_topics(
    kafka: KafkaSettings,
    topics: dict[str, str],
    timeout_s: float,
    *,
    dlq_topic: str = "",
    sizes: dict[str, tuple[int, str]] | None = None,
) -> str:
    """Every topic of ``topics`` (name -> the key that names it) exists, ``dlq_topic``'s
    ``max.message.bytes`` is at least ``kafka.max_request_size``, and each topic of ``sizes``
    (name -> (the largest batch the caller sends there, which setting makes it that large))
    takes that many bytes; else a ``UserError`` naming every bad topic (one line when only one
    is, ``topics_report``): an operator who fixed only the first would otherwise meet the next
    at the next start.

    Production brokers do not create topics on first use (nor does the dev broker): a missing
    topic would otherwise show up as a consumer that never gets partitions, or as dead letters
    and alerts retried until someone looks.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    problems: dict[str, list[str]] = {}  # topic -> what is wrong with it, in the order found
    admin = AIOKafkaAdminClient(**kafka_client_options(kafka))
    try:
        with quiet_aiokafka():
            async with asyncio.timeout(timeout_s):
                await admin.start()
                codes = await _topic_errors(admin, list(topics))
                for name, key in topics.items():
                    create = create_topic_advice(kafka.bootstrap_servers, name)
                    problem = topic_problem(name, key, codes[name], principal(kafka), create)
                    if problem:
                        problems[name] = [problem]
                sizes = dict(sizes or {})
                if not problems and not dlq_topic and not sizes:
                    return f"kafka: topics {', '.join(sorted(topics))} exist"
                # The sizes of the topics that are there, whatever is wrong with the others.
                names = ([dlq_topic] if dlq_topic else []) + sorted(sizes)
                names = [n for n in names if n not in problems]
                limits = await _message_limits(admin, names, principal(kafka)) if names else {}
    except (TimeoutError, OSError, KafkaError) as exc:
        raise UserError(
            f"kafka.bootstrap_servers = {kafka.bootstrap_servers}: could not list the topics "
            f"within {timeout_s:g}s ({exc or type(exc).__name__}); "
            f"{unreachable_kafka(kafka.bootstrap_servers)}"
        ) from None
    finally:
        await admin.close()
    for name, (need, setting) in sizes.items():
        # A batch over the topic's limit is refused whole, and the idempotent producer's
        # sequence then has a gap: refused at start, with what to change, instead.
        took = limits.get(name)
        if took is not None and int(took) < need:
            problems.setdefault(name, []).append(
                f"Kafka topic {name} takes at most {took} bytes (max.message.bytes) but gets "
                f"batches of up to {need} bytes ({setting}): raise the topic's "
                f"max.message.bytes to at least {need} (kafka-configs.sh --alter "
                f"--add-config max.message.bytes={need}) or lower {setting}"
            )
    limit = limits.get(dlq_topic) if dlq_topic else None
    if limit is not None and int(limit) < kafka.max_request_size:
        problems.setdefault(dlq_topic, []).append(
            f"kafka.max_request_size ({kafka.max_request_size}) is larger than max.message.bytes "
            f"({limit}) of the dead-letter topic {dlq_topic}: the broker could refuse dead "
            "letters; raise the topic's max.message.bytes (kafka-configs.sh --alter) or lower "
            "kafka.max_request_size and kafka.max_record_bytes"
        )
    if problems:
        raise UserError(topics_report({name: "; ".join(p) for name, p in problems.items()}))
    if not dlq_topic:
        return f"kafka: topics {', '.join(sorted(topics))} exist and take their batches"
    return f"kafka: topics {', '.join(sorted(topics))} exist; {dlq_topic} takes {limit} bytes"


async def _topic_errors(admin: Any, names: list[str]) -> dict[str, int]:
    """The error code of each topic's entry in a Metadata answer for ``names``: 0 when it
    exists (``transport_errors.topic_problem`` reads the others).

    Not ``list_topics``: its answer (every topic) leaves out those the principal may not
    describe, so a missing ACL looked like a missing topic. Not ``describe_topics`` either: it
    asks the broker to create the topics it names, which a production broker with
    auto.create.topics.enable would do, so a start check would create a misspelt topic."""
    from aiokafka.protocol.metadata import MetadataRequest

    # aiokafka's admin has no public call for a request of our own; _send_request picks a node
    request = MetadataRequest(names, allow_auto_topic_creation=False)
    answer = (await admin._send_request(request)).to_object()
    codes = {t["topic"]: int(t["error_code"]) for t in answer["topics"]}
    # a name the answer leaves out (no broker does, but the check must not pass on it)
    return {name: codes.get(name, UNKNOWN_TOPIC) for name in names}


def principal(kafka: KafkaSettings) -> str:
    """Who the brokers take this client for, as ACLs name it (for the messages)."""
    if kafka.security_protocol.startswith("SASL_"):
        return f"User:{kafka.sasl_username}"
    if kafka.security_protocol == "SSL" and kafka.ssl_certfile:  # its subject: unknown here
        return f"the principal of the certificate in kafka.ssl_certfile ({kafka.ssl_certfile})"
    return "User:ANONYMOUS"  # Kafka's principal for a client that did not authenticate


async def _message_limits(admin: Any, names: list[str], who: str) -> dict[str, str | None]:
    """``max.message.bytes`` of each topic of ``names``, in one DescribeConfigs request (the
    gateway checks up to five topics at its start: one round trip, not five). None for a
    topic whose value the broker did not give, with a WARNING saying why: the check that a
    batch fits is then not made, and a topic too small shows only as refused frames (or dead
    letters), so that is said, not silent; the producer's error handling still holds."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    key = "max.message.bytes"
    wanted = list(dict.fromkeys(names))  # the DLQ may be among the sized topics too
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, {key: None}) for n in wanted]
    # Each topic of the answer has its own error code: one refused topic costs only its check.
    found: dict[str, tuple[int, str | None]] = {}
    for response in await admin.describe_configs(resources):
        for error_code, _msg, _type, name, entries, *_ in response.resources:
            value = next((str(e[1]) for e in entries if e[0] == key), None)
            found[name] = (error_code, None if error_code else value)
    limits = {}
    for name in wanted:
        code, limits[name] = found.get(name, (0, None))
        if limits[name] is None:
            log.warning(
                "could not read max.message.bytes of Kafka topic %s (%s); whether it takes the "
                "largest batch sent there is not checked",
                name,
                _why_no_config(code, who),
                extra={"topic": name},
            )
    return limits


def _why_no_config(code: int, who: str) -> str:
    from aiokafka.errors import for_code

    if code in (0, TOPIC_AUTHORIZATION_FAILED):  # no value: also how some brokers refuse it
        return f"grant {who} DESCRIBE_CONFIGS on the topic, docs/security.md"
    return f"the broker answered {for_code(code).__name__}"


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs every refused connection at ERROR; while we poll a starting broker (or
    report an unreachable one ourselves in one line) that is noise."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _days(n: int) -> timedelta | None:
    return timedelta(days=n) if n > 0 else None


def pool_params(settings: Settings, application: str = "nev-ingest") -> PoolParams:
    """``[postgres]`` + ``storage.schema`` as the storage layer's connection parameters."""
    pg = settings.postgres
    return PoolParams(
        dsn=postgres_dsn(pg),
        password=pg.password or None,
        schema=settings.storage.schema,
        min_size=pg.pool_min_size,
        max_size=pg.pool_max_size,
        statement_timeout_ms=pg.statement_timeout_ms,
        connect_timeout_s=pg.connect_timeout_s,
        tcp_user_timeout_s=settings.storage.write_timeout_s,
        application_name=application,
    )


def shard_pool_params(settings: Settings, application: str = "nev-ingest") -> list[PoolParams]:
    """One ``pool_params`` per shard, in shard order (shard i = ``storage.shards[i]``, the owner
    of Kafka partitions p with p % N == i, ``storage.shards.shard_of``); with no shards, the one
    database of ``postgres.dsn``. Password, TLS and pool sizes come from ``postgres.*``."""
    return [_pool_params_at(settings, pg.dsn, application) for _, pg in databases(settings)]


def query_pool_params(settings: Settings, application: str = "nev-ingest") -> PoolParams | None:
    """The query database (``storage.query_dsn``) with ``postgres.*`` credentials, or None."""
    dsn = settings.storage.query_dsn
    return _pool_params_at(settings, dsn, application) if dsn else None


def _pool_params_at(settings: Settings, dsn: str, application: str) -> PoolParams:
    pg = dataclasses.replace(settings.postgres, dsn=dsn)
    return pool_params(dataclasses.replace(settings, postgres=pg), application)


def storage_params(settings: Settings) -> StorageParams:
    """``[storage]`` + ``postgres.schema_mode`` as what migrate and maintenance take."""
    st = settings.storage
    retention = {
        **dict.fromkeys(TELEMETRY_TABLES, _days(st.retention_days)),
        "raw_frames": _days(st.raw_frames_retention_days),
        "vehicle_stats_1m": _days(st.stats_1m_retention_days),
        "vehicle_stats_1h": _days(st.stats_1h_retention_days),
    }
    overrides = {}
    if st.chunk_interval_min:
        chunk = timedelta(minutes=st.chunk_interval_min)
        overrides = dict.fromkeys(busy_tables(raw_frames=True), chunk)
    return StorageParams(
        schema=st.schema,
        mode=SchemaMode(settings.postgres.schema_mode),
        timescale=TimescaleParams(
            fleet=FleetProfile(
                vehicles=st.fleet_vehicles,
                connectors=st.fleet_connectors,
                packs=st.fleet_packs,
                frame_interval_s=st.frame_interval_s,
                memory_bytes=int(st.db_memory_gb * 2**30),
                raw_frames=st.raw_frames,
            ),
            chunk_overrides=overrides,
            compress_after=timedelta(hours=st.compress_after_h),
            retention=retention,
        ),
        plain=PlainParams(
            partition_interval=timedelta(hours=st.partition_interval_h),
            premake=timedelta(days=st.partition_premake_days),
            backfill=timedelta(days=st.partition_backfill_days),
            retention=retention,
        ),
    )


def writer_params(settings: Settings) -> WriterParams:
    """What the batch writer takes, from ``[kafka]``, ``[postgres]`` and ``[storage]``."""
    return WriterParams(
        consumer_group=settings.kafka.group_id,
        schema=settings.storage.schema,
        loader=LoaderKind(settings.postgres.loader),
        dedupe=Dedupe(settings.storage.dedupe),
        raw_frames=settings.storage.raw_frames,
        # used on plain PostgreSQL only: partitions of in-window frame times on demand
        partition_interval=timedelta(hours=settings.storage.partition_interval_h),
        latest_interval_ms=settings.storage.latest_interval_ms,
        write_timeout_s=settings.storage.write_timeout_s,
    )
