"""Test services: the real Kafka, PostgreSQL and TimescaleDB engine of the dev stack.

Contract (every test module relies on these names):

- ``kafka_bootstrap: str`` - bootstrap servers of a real Kafka 4.x broker;
- ``postgres_dsn: str`` - ``postgresql://`` DSN of the dev cluster's maintenance database
  (``postgres``), for CREATE DATABASE and friends; isolate with ``fresh_database``;
- ``timescale_dsn: str`` - DSN of PGlite-TimescaleDB (ONE connection at a time, sslmode=disable,
  no COPY FROM STDIN); isolate with a unique schema.

All three are session-scoped. Each starts only its own service, once per test session, through
``nev-ingest devstack`` (state in devstack.state_dir, default .devstack/), or reuses what
``NEV_KAFKA_BOOTSTRAP_SERVERS`` / ``NEV_POSTGRES_DSN`` / ``NEV_TEST_TIMESCALE_DSN`` point at. A
service the session started is stopped at its end; one that was already running is left alone.

Shards: ``shard_cluster_dsns: tuple[str, str]`` - maintenance DSNs of the two clusters of a
2-shard dev stack (``postgres`` and ``postgres-1``, or the first two of ``NEV_STORAGE_SHARDS``);
``fresh_shards`` - a new database on each plus a new query database, dropped afterwards.

Helpers: ``fresh_database`` (a new database, dropped afterwards), ``unique_topic`` (a factory of
new topics), ``unique_name`` (a factory of collision-free identifiers).

Topics: after a test's fixtures are torn down (the services it started have stopped), every
topic of the dev broker whose name begins with a name the test's ``unique_name`` made is
deleted (``pytest_runtest_teardown``): however the test created it (``unique_topic``,
``ensure_topics``, an admin client, a subprocess). The last test of a session is torn down
together with the session's fixtures, and a broker the session started stops with them: its
topics are deleted by ``kafka_bootstrap``'s finalizer, before the broker stops. Leftover topics
once filled the broker with ~20,000 partition directories, and it died of "Too many open files".
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from devtools.devstack import (
    ENV_KAFKA,
    ENV_POSTGRES,
    ENV_SHARDS,
    ENV_TIMESCALE,
    StackState,
    stack,
)
from devtools.settings import DevSettings, load_dev_settings

T = TypeVar("T")

log = logging.getLogger(__name__)

# The names a test's unique_name made (on the test item); the dev broker the session's
# kafka_bootstrap gave, and the names of tests torn down whose topics are not deleted yet (on
# the config): what the topic cleanup deletes, and where.
_MADE_NAMES = pytest.StashKey[list[str]]()
_KAFKA_BOOTSTRAP = pytest.StashKey[str]()
_PENDING = pytest.StashKey[dict[str, list[str]]]()
# Each step of the cleanup's delete (connect, list, delete, wait until gone): a local broker
# answers in milliseconds, and one that accepts connections but never answers must not cost
# every Kafka test delete_topics' default 30 s.
_DELETE_TIMEOUT_S = 5.0


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop (a worker
    thread gets its own loop, so pytest-asyncio's session loop is never touched)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="conftest-run-async")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


_KINDS = ("unit", "integration")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fail collection when a test has neither the ``unit`` nor the ``integration`` marker.

    ``pytest -m unit`` (docs/development.md) silently leaves out an unmarked test, so an
    unmarked module would never run in the fast suite. tryfirst: this sees every collected
    item, before ``-m`` deselects any of them.
    """
    unmarked = sorted(
        {
            item.nodeid.split("::")[0]  # the module's path from the rootdir
            for item in items
            if not any(item.get_closest_marker(kind) for kind in _KINDS)
        }
    )
    if unmarked:
        raise pytest.UsageError(
            "tests without a unit or integration marker (add `pytestmark = pytest.mark.unit`"
            " or `pytestmark = pytest.mark.integration` to each module): " + ", ".join(unmarked)
        )


class _DevStack:
    """Starts services on demand, once per session; stops at the end only what it started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: list[str] = []
        self._settings: DevSettings | None = None

    @property
    def settings(self) -> DevSettings:
        if self._settings is None:
            # Only devstack.* matters here; NEV_DEVSTACK_* variables still apply.
            self._settings = load_dev_settings()
        return self._settings

    def url(self, service: str) -> str:
        with self._lock:
            state = StackState.load(stack.Paths.from_settings(self.settings).state_dir)
            if state.running(service) is None:
                state = stack.up(self.settings, only=(service,), report=False)
                self._started.append(service)
            return state.services[service].url

    def stop_started(self) -> None:
        if self._started:
            stack.down(self.settings, only=tuple(self._started), report=False)
            self._started.clear()


@pytest.fixture(scope="session")
def _devstack() -> Iterator[_DevStack]:
    dev = _DevStack()
    try:
        yield dev
    finally:
        dev.stop_started()


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def kafka_bootstrap(_devstack: _DevStack, request: pytest.FixtureRequest) -> str:
    """Bootstrap servers of the real broker (``host:port[,host:port]``)."""
    bootstrap = os.environ.get(ENV_KAFKA) or _devstack.url("kafka")
    request.config.stash[_KAFKA_BOOTSTRAP] = bootstrap
    # Session fixtures are torn down within the last test's teardown, before the teardown hook
    # gets to delete its topics; _devstack (set up before this fixture, so torn down after it)
    # may stop the broker: delete what is still pending while it runs.
    request.addfinalizer(lambda: _delete_pending(request.config))
    return bootstrap


@pytest.fixture(scope="session")
def postgres_dsn(_devstack: _DevStack) -> str:
    """DSN of the maintenance database (``postgres``) of the real PostgreSQL cluster."""
    configured = os.environ.get(ENV_POSTGRES)
    if configured:
        return _with_database(configured, "postgres")
    return _with_database(_devstack.url("postgres"), "postgres")


@pytest.fixture(scope="session")
def shard_cluster_dsns(postgres_dsn: str, _devstack: _DevStack) -> tuple[str, str]:
    """Maintenance DSNs (``postgres`` database) of two PostgreSQL clusters, shard 0 and 1."""
    configured = [d.strip() for d in os.environ.get(ENV_SHARDS, "").split(",") if d.strip()]
    if len(configured) >= 2:
        return (
            _with_database(configured[0], "postgres"),
            _with_database(configured[1], "postgres"),
        )
    return (postgres_dsn, _with_database(_devstack.url("postgres-1"), "postgres"))


@dataclass(frozen=True, slots=True)
class ShardDatabases:
    """Fresh databases of one test: ``shards[i]`` on cluster i, ``query`` on cluster 0."""

    shards: tuple[str, ...]
    query: str


def _create_database(maintenance: str, name: str) -> str:
    import psycopg

    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_database(maintenance, name)


def _drop_database(maintenance: str, name: str) -> None:
    import psycopg

    with psycopg.connect(maintenance, autocommit=True) as conn:
        # FORCE: a test that leaked a connection must not leave its database behind.
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_shards(
    shard_cluster_dsns: tuple[str, str], unique_name: Callable[[str], str]
) -> Iterator[ShardDatabases]:
    """A new, empty database on each of the two shard clusters and a new query database on
    the first (not migrated: ``nev-ingest migrate`` or ``migrate_shards`` does that)."""
    made: list[tuple[str, str]] = []
    try:
        shards = []
        for maintenance in shard_cluster_dsns:
            name = unique_name("shard")
            made.append((maintenance, name))
            shards.append(_create_database(maintenance, name))
        name = unique_name("query")
        made.append((shard_cluster_dsns[0], name))
        query = _create_database(shard_cluster_dsns[0], name)
        yield ShardDatabases(shards=tuple(shards), query=query)
    finally:
        # the query database first: its foreign servers hold connections to the shards
        for maintenance, name in reversed(made):
            _drop_database(maintenance, name)


@pytest.fixture(scope="session")
def timescale_dsn(_devstack: _DevStack) -> str:
    """DSN of the PGlite-TimescaleDB engine: one connection at a time, no SSL, no COPY."""
    return os.environ.get(ENV_TIMESCALE) or _devstack.url("timescale")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("tel")`` -> ``tel_3f9a1c0e2b``: a valid SQL identifier and topic name
    (ten hex digits, at least one a letter, as ``devstack prune-topics`` expects).

    A topic named by it (or by it plus a suffix: ``tel_3f9a1c0e2b.veh``) is deleted after the
    test (``pytest_runtest_teardown``)."""
    made = request.node.stash.setdefault(_MADE_NAMES, [])

    def make(prefix: str = "t") -> str:
        token = uuid.uuid4().hex[:10]
        while token.isdigit():  # one in ~110: prune-topics takes ten digits for a timestamp
            token = uuid.uuid4().hex[:10]
        name = f"{prefix}_{token}"
        made.append(name)
        return name

    return make


@pytest.fixture
def fresh_database(postgres_dsn: str, unique_name: Callable[[str], str]) -> Iterator[str]:
    """DSN of a new, empty database on the dev cluster, dropped after the test."""
    import psycopg

    name = unique_name("test")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(postgres_dsn, name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            # FORCE: a test that leaked a connection must not leave its database behind.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def unique_topic(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Callable[..., str]:
    """Factory: ``unique_topic(partitions=3)`` creates a new topic and returns its name; the
    topic is deleted after the test (its name is a ``unique_name``)."""
    from devtools.devstack.kafka import ensure_topics

    def make(partitions: int = 1, prefix: str = "test") -> str:
        name = unique_name(prefix)
        run_async(ensure_topics(kafka_bootstrap, {name: partitions}, replication_factor=1))
        return name

    return make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Delete the dev broker's topics named by the test's ``unique_name``, once its fixtures
    are torn down: here, not in ``unique_topic``'s finalizer, because a fixture set up before
    ``unique_topic`` (a service the test hands the topic to) is torn down after it, and a
    service whose topic vanishes logs errors or waits for metadata; after this teardown
    nothing of the test runs any more. The names wait on the config until then, for
    ``kafka_bootstrap``'s finalizer when the session's fixtures go too (the last test).

    A failed delete is logged, not raised: the test's outcome is its own, and a leftover topic
    costs only disk (``nev-ingest devstack prune-topics`` clears what is left)."""
    names = item.stash.get(_MADE_NAMES, None)
    # A test that did not ask for the broker created no topic on it: no admin round trip.
    if names and "kafka_bootstrap" in getattr(item, "fixturenames", ()):
        item.config.stash.setdefault(_PENDING, {})[item.nodeid] = list(names)
    try:
        return (yield)
    finally:
        _delete_pending(item.config, item.nodeid)


def _delete_pending(config: pytest.Config, nodeid: str | None = None) -> None:
    """Delete the topics of the test ``nodeid`` (None: of every test) still pending, and take
    them off the list. A failure is logged, once: a broker that did not answer costs no second
    wait for the same names."""
    pending = config.stash.get(_PENDING, {})
    bootstrap = config.stash.get(_KAFKA_BOOTSTRAP, None)
    tests = [nodeid] if nodeid is not None else list(pending)
    prefixes = tuple(name for test in tests for name in pending.get(test, ()))
    if not prefixes or bootstrap is None:
        return
    from devtools.devstack.kafka import delete_topics

    for test in tests:
        pending.pop(test, None)
    wanted = lambda topic: topic.startswith(prefixes)  # noqa: E731
    try:
        run_async(delete_topics(bootstrap, wanted, timeout_s=_DELETE_TIMEOUT_S))
    except Exception as exc:  # any failure: logged, and the topics stay
        log.warning("could not delete the topics of %s at %s: %s", ", ".join(tests), bootstrap, exc)
