"""Turn settings into client arguments, and check that the services answer.

Wiring code (the pipeline, the CLI) uses these so that every client gets the same security
settings; library code takes the resulting plain arguments.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ingest.config import KafkaSettings, PostgresSettings
from ingest.config_fields import mask_dsn
from ingest.errors import UserError


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
    parts = urlsplit(pg.dsn)
    query = dict(parse_qsl(parts.query))
    extra = {
        "sslmode": pg.sslmode,
        "sslrootcert": pg.sslrootcert,
        "sslcert": pg.sslcert,
        "sslkey": pg.sslkey,
    }
    for key, value in extra.items():
        if value and key not in query:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def postgres_server_settings(pg: PostgresSettings, application_name: str) -> dict[str, str]:
    """Session settings to send at connect (asyncpg ``server_settings``)."""
    return {
        "application_name": application_name,
        "statement_timeout": str(pg.statement_timeout_ms),
    }


async def check_kafka(kafka: KafkaSettings, timeout_s: float) -> str:
    """Connect to the brokers and describe the cluster; a one-line ``UserError`` if none answers."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    from ingest.devstack.kafka import quiet_aiokafka

    admin = AIOKafkaAdminClient(**kafka_client_options(kafka))
    try:
        with quiet_aiokafka():
            async with asyncio.timeout(timeout_s):
                await admin.start()
                cluster = await admin.describe_cluster()
    except (TimeoutError, OSError, KafkaError) as exc:
        raise UserError(
            f"kafka.bootstrap_servers = {kafka.bootstrap_servers}: no broker answered within "
            f"{timeout_s:g}s ({exc or type(exc).__name__}); start one (nev-ingest devstack up, "
            'then eval "$(nev-ingest devstack env)") or fix NEV_KAFKA_BOOTSTRAP_SERVERS'
        ) from None
    finally:
        await admin.close()
    brokers = cluster.get("brokers", [])
    return f"kafka: {len(brokers)} broker(s), cluster {cluster.get('cluster_id')}"


async def check_postgres(pg: PostgresSettings, timeout_s: float) -> str:
    """Connect and ask the server version; a one-line ``UserError`` if it does not answer."""
    import asyncpg

    try:
        conn = await asyncpg.connect(
            postgres_dsn(pg), password=pg.password or None, timeout=timeout_s
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise UserError(
            f"postgres.dsn = {mask_dsn(pg.dsn)}: cannot connect ({type(exc).__name__}: {exc}); "
            "start the dev stack (nev-ingest devstack up) or fix NEV_POSTGRES_DSN"
        ) from None
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return f"postgres: server {version}"
