"""Why a connection to Kafka or PostgreSQL failed, in one line that names the setting to fix.

aiokafka's bootstrap swallows the cause ("Unable to bootstrap from ...": refused, untrusted
certificate and wrong password all look alike), so ``kafka_hint`` connects once more to the
first bootstrap server with the same options, outside the bootstrap loop, and reads the real
exception. asyncpg raises the cause itself; ``postgres_hint`` only names the setting.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Final

__all__ = [
    "TOPIC_AUTHORIZATION_FAILED",
    "UNKNOWN_TOPIC",
    "kafka_hint",
    "postgres_hint",
    "topic_problem",
    "topics_report",
]

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: the certificate is trusted but names another host.
_HOSTNAME_MISMATCH: Final = 62
# Kafka's error codes in a Metadata answer's topic entry (the protocol's, as the broker sends
# them): the topic does not exist; the principal may not DESCRIBE it.
UNKNOWN_TOPIC: Final = 3
TOPIC_AUTHORIZATION_FAILED: Final = 29
# A topic entry that says the topic is there: no error, or one about its partitions' leaders
# (a topic being created or moved; the producer waits for those itself).
_TOPIC_EXISTS: Final = (0, 5, 9)  # none, LEADER_NOT_AVAILABLE, REPLICA_NOT_AVAILABLE


def _tls_hint(exc: ssl.SSLCertVerificationError, host_key: str, ca_key: str, host: str) -> str:
    if exc.verify_code == _HOSTNAME_MISMATCH:
        return (
            f"the server's certificate is not valid for {host!r}: connect by a name or address "
            f"its certificate lists (fix the host in {host_key})"
        )
    return (
        f"the server's certificate is not trusted ({exc.verify_message}): point {ca_key} at the "
        "CA that signed it"
    )


async def kafka_hint(options: dict[str, Any], timeout_s: float) -> str | None:
    """What is wrong with reaching the first bootstrap server with aiokafka ``options``, or
    None when that connection works (or fails in a way with no setting to name)."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    first = str(options["bootstrap_servers"]).split(",")[0].strip()
    host, _, port = first.rpartition(":")
    host = host.strip("[]")
    keys = (
        "ssl_context",
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
    )
    conn_options = {k: options[k] for k in keys if k in options}
    try:
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(host, int(port), **conn_options)
    except ssl.SSLCertVerificationError as exc:
        return "Kafka: " + _tls_hint(exc, "kafka.bootstrap_servers", "kafka.ssl_cafile", host)
    except ssl.SSLError as exc:
        return (
            f"Kafka at {first}: TLS failed ({exc.reason}); is it a TLS listener? "
            "check kafka.security_protocol"
        )
    except KafkaError as exc:
        text = str(exc).lower()
        if "authentication" in text or "sasl" in text or "credentials" in text:
            return (
                f"Kafka at {first} refused the SASL login of {options.get('sasl_plain_username')!r}"
                " (wrong user or password): fix kafka.sasl_username / kafka.sasl_password "
                "(or kafka.sasl_password_file), or kafka.sasl_mechanism"
            )
    except (TimeoutError, OSError):
        pass
    else:
        conn.close()
        return None
    # A client without TLS at a TLS listener sees only a closed connection or silence.
    if "ssl_context" not in options and await _speaks_tls(host, int(port), timeout_s):
        return (
            f"Kafka at {first} expects TLS: set kafka.security_protocol = SSL or SASL_SSL "
            f"(now {options.get('security_protocol')}) and kafka.ssl_cafile"
        )
    return None


async def _speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    """Whether the server completes a TLS handshake (its certificate is not checked: only
    the protocol is in question here, and nothing is sent over it)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


def topic_problem(name: str, key: str, code: int, principal: str, create: str) -> str | None:
    """What is wrong with Kafka topic ``name`` (named by setting ``key``) by the error ``code``
    of its Metadata answer, or None when it exists. ``principal``: who asked (``User:x``);
    ``create``: how to create a missing topic here.

    A principal that may not DESCRIBE a topic gets TOPIC_AUTHORIZATION_FAILED for it whether or
    not it exists (Kafka does not tell it apart, on purpose): saying "does not exist" then had
    operators create a topic that was there, while the ACL was what was missing."""
    if code in _TOPIC_EXISTS:
        return None
    if code == TOPIC_AUTHORIZATION_FAILED:
        return (
            f"Kafka topic {name!r} ({key}): {principal} is not authorized to describe it "
            "(TOPIC_AUTHORIZATION_FAILED; the broker does not say whether it exists): grant "
            f"DESCRIBE on topic {name} to {principal} (kafka-acls.sh --add --allow-principal "
            f"{principal} --operation Describe --topic {name}; docs/security.md) or fix {key}"
        )
    if code == UNKNOWN_TOPIC:
        return (
            f"Kafka topic {name!r} ({key}) does not exist and the brokers do not create "
            f"topics: create it ({create}) or fix {key}"
        )
    from aiokafka.errors import for_code

    return (
        f"Kafka topic {name!r} ({key}): the broker answered {for_code(code).__name__} "
        f"(error {code}) when asked for it; fix {key} or the topic"
    )


def topics_report(problems: dict[str, str]) -> str:
    """One error for every bad Kafka topic (topic -> what is wrong and what to do, as
    ``topic_problem`` and the size checks say it): the message itself when only one topic is
    bad, else a one-line summary over one line per topic, so that an operator fixes them all
    before the next start instead of meeting them one start at a time."""
    if len(problems) == 1:
        return next(iter(problems.values()))
    # Each problem names its topic and key already: the lines need no prefix but the bullet.
    lines = [f"  - {problem}" for problem in problems.values()]
    return "\n".join([f"{len(problems)} Kafka topics are not usable; fix each of them:", *lines])


def postgres_hint(exc: BaseException, host: str, dsn_key: str = "postgres.dsn") -> str | None:
    """The setting to fix for a failed PostgreSQL connection, or None. ``dsn_key``: the setting
    that names the database (a shard's is ``storage.shards[i]``)."""
    import asyncpg

    if isinstance(exc, ssl.SSLCertVerificationError):
        return "PostgreSQL: " + _tls_hint(exc, dsn_key, "postgres.sslrootcert", host)
    rejected = asyncpg.InvalidAuthorizationSpecificationError
    if isinstance(exc, rejected) and "no encryption" in str(exc):  # pg_hba: hostssl only
        return (
            f"PostgreSQL requires TLS ({exc}): set postgres.sslmode = verify-full "
            "and postgres.sslrootcert"
        )
    if isinstance(exc, asyncpg.InvalidPasswordError | rejected):
        return (
            f"PostgreSQL refused the login ({exc}): fix the user in {dsn_key} or "
            "postgres.password (or postgres.password_file)"
        )
    return None
