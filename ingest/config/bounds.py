"""Limits and name shapes shared by several settings sections (and by the CLI's flags)."""

from __future__ import annotations

from typing import Final

from contract.sql_names import PLAIN_NAME, PLAIN_ROLE
from ingest.config.fields import Pattern

__all__ = [
    "KAFKA_TOPIC",
    "MAX_PARTITIONS",
    "MAX_RETENTION_DAYS",
    "MAX_TIMEOUT_S",
    "MAX_WORKERS",
    "PORT_MAX",
    "PORT_MIN",
    "SQL_IDENTIFIER",
    "SQL_ROLE",
]

PORT_MIN: Final = 1
PORT_MAX: Final = 65535

# Upper bounds shared by several keys. They only stop absurd values (a typo, an extra digit);
# raise one if a real deployment needs more.
MAX_PARTITIONS: Final = 10_000
MAX_WORKERS: Final = 256  # processes of one host; more hosts scale further, not more workers
MAX_TIMEOUT_S: Final = 3600.0
MAX_RETENTION_DAYS: Final = 36_500  # 100 years; 0 keeps forever
# Schema names are spliced into SQL text (storage.params.check_identifier accepts the same).
SQL_ROLE: Final = Pattern(
    PLAIN_ROLE,
    "a plain SQL name that may name a role (lower-case letters, digits, '_'; not starting with "
    "a digit; at most 63 characters; not a reserved SQL word such as user or select, nor public "
    "or none; not starting with pg_)",
)
SQL_IDENTIFIER: Final = Pattern(
    PLAIN_NAME,
    "a plain SQL name (lower-case letters, digits, '_'; not starting with a digit; "
    "at most 63 characters; not a reserved SQL word such as user or select; not starting "
    "with pg_)",
)

# Kafka's own rule for topic names (org.apache.kafka.common.internals.Topic).
KAFKA_TOPIC: Final = Pattern(
    r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,249}",
    "a Kafka topic name (letters, digits, '.', '_', '-'; 1 to 249 characters; not '.' or '..')",
)
