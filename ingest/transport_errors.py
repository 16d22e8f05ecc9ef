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

__all__ = ["kafka_hint", "postgres_hint"]

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: the certificate is trusted but names another host.
_HOSTNAME_MISMATCH: Final = 62


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
