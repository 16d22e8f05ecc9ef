"""The local dev stack: real Kafka, PostgreSQL and PGlite-TimescaleDB as plain processes.

No Docker, no mocks: ``nev-ingest devstack up`` runs Apache Kafka 4.x (KRaft, jars from Maven
Central), an initdb PostgreSQL cluster and, with ``--with timescale``, PGlite-TimescaleDB over the
wire protocol, on free loopback ports, with data, logs and ``state.json`` under the state
directory (default ``.devstack/``). ``up --shards N`` runs N PostgreSQL clusters (shard i in
``postgres-<i>/``) and the query database ``nev_query`` on the first. Tests, the demo and
``devstack env`` read their addresses from there.
"""

from devtools.devstack.stack import (
    ENV_KAFKA,
    ENV_POSTGRES,
    ENV_QUERY_DSN,
    ENV_REPLICAS,
    ENV_SHARDS,
    ENV_TIMESCALE,
    Paths,
    down,
    env_lines,
    status,
    up,
)
from devtools.devstack.state import ServiceState, StackState

__all__ = [
    "ENV_KAFKA",
    "ENV_POSTGRES",
    "ENV_QUERY_DSN",
    "ENV_REPLICAS",
    "ENV_SHARDS",
    "ENV_TIMESCALE",
    "Paths",
    "ServiceState",
    "StackState",
    "down",
    "env_lines",
    "status",
    "up",
]
