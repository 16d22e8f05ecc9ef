"""Storage upkeep with two shards, one of them down or hung (``StorageSink.maintain``, which every
worker runs every few minutes): the shard that is up still gets its partitions ahead made, and
the failure of the other (refused, or out of its time) is raised after that, naming it, and the
worker logs it as one line (as the moved-entity lookup's error says what waited). Shard 0
is this test's own cluster, which it stops or freezes (SIGSTOP); shard 1 a fresh database on
the shared cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from ingest.config.load import load_settings
from ingest.pipeline import upkeep
from ingest.pipeline.lag import LagReporter
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.sink import TransientSinkError
from ingest.pipeline.storage_sink import StorageSink
from storage import partitions as partitions_module
from storage.partitions import PARTITION_LOCK_KEY, listing
from tests.integration import pipeline_support as ps
from tests.integration.private_services import PrivateCluster

pytestmark = pytest.mark.integration


async def partitions(dsn: str) -> list[str]:
    """vehicle_telemetry's partitions by name, oldest first (names carry their start time).
    ``listing`` as imported here, not the module attribute the freezer wraps."""
    conn = await asyncpg.connect(dsn)
    try:
        return sorted(name for name, _, _ in await listing(conn, "nev", "vehicle_telemetry"))
    finally:
        await conn.close()


async def drop(dsn: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP TABLE nev."{table}"')
    finally:
        await conn.close()


class Freezer:
    """Freezes shard 0's cluster (SIGSTOP) from inside its upkeep pass, once, when the pass
    lists its partitions (``storage.partitions.listing``): with the pass's advisory lock and a
    transaction's work behind it. A regression would wait for the frozen server for ever, and
    no cancellation gets past that wait, so a thread thaws the cluster after ``RESCUE_S``: the
    test then fails instead of hanging (if the test process itself is killed, the cluster
    stays frozen; stop it with SIGCONT, then pg_ctl)."""

    RESCUE_S = 60.0

    def __init__(self, cluster: PrivateCluster, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cluster = cluster
        self.frozen: list[int] = []
        self.froze = asyncio.Event()
        self.rescue = threading.Timer(self.RESCUE_S, self.thaw)
        port = str(cluster.state.port)

        async def listing_then_freeze(conn: Any, *args: Any) -> Any:
            if not self.frozen and await conn.fetchval("SELECT current_setting('port')") == port:
                self.freeze()
            return await listing(conn, *args)

        monkeypatch.setattr(partitions_module, "listing", listing_then_freeze)

    def freeze(self) -> None:
        # The postmaster first (it forks no backend after that), then its children; each pid
        # noted as soon as it is stopped, so that ``thaw`` finds every one.
        postmaster = self.cluster.state.pid
        assert postmaster is not None
        os.kill(postmaster, signal.SIGSTOP)
        self.frozen.append(postmaster)
        self.rescue.start()
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in map(int, children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                self.frozen.append(pid)
        self.froze.set()

    def thaw(self) -> None:
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        self.rescue.cancel()
        self.thaw()


@pytest.fixture
def freezer(cluster: PrivateCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Freezer]:
    monkeypatch.setattr(upkeep, "UPKEEP_SHARD_TIMEOUT_S", 20.0)
    f = Freezer(cluster, monkeypatch)
    try:
        yield f
    finally:
        f.close()  # before the cluster's and the sink's own teardown, which need it thawed


class Shards:
    """Two migrated shards, a sink started on them, and shard 1's partitions before upkeep
    with the one furthest ahead dropped."""

    def __init__(self, sink: StorageSink, up: str, before: list[str]) -> None:
        self.sink, self.up, self.before = sink, up, before

    async def made_again(self) -> bool:
        after = await partitions(self.up)
        # A superset: should midnight UTC pass meanwhile, upkeep also makes the next day's.
        return set(self.before) <= set(after)


@pytest.fixture
async def shards(fresh_database: str, cluster: PrivateCluster) -> AsyncIterator[Shards]:
    down, up = cluster.dsn, fresh_database
    for dsn in (down, up):
        await ps.migrate_database(dsn)
    before = await partitions(up)
    assert len(before) > 2, "migrate makes the plain partitions around now"
    environ = {"NEV_POSTGRES_DSN": down, "NEV_STORAGE_SHARDS": f"{down},{up}"}
    sink = StorageSink.from_settings(load_settings(environ=environ), metrics=PipelineMetrics())
    await sink.start()
    try:
        await drop(up, before[-1])  # the partition furthest ahead, which upkeep makes again
        assert not set(before) <= set(await partitions(up))
        yield Shards(sink, up, before)
    finally:
        await sink.close()


async def test_a_shard_down_does_not_stop_the_others_upkeep(
    shards: Shards, cluster: PrivateCluster, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(cluster.stop)
    with caplog.at_level("INFO", logger="storage.maintenance"), pytest.raises(Exception) as caught:
        await shards.sink.maintain()
    assert await shards.made_again()  # shard 1's upkeep ran all the same
    assert "storage maintenance of shard 0" in getattr(caught.value, "__notes__", [])
    # ops can tell which shard a maintenance line is about
    made = [r for r in caplog.records if r.getMessage().endswith(shards.before[-1])]
    assert [getattr(r, "shard", None) for r in made] == [1]


async def test_a_shard_that_hangs_mid_pass_is_given_up_on_in_its_time(
    shards: Shards, freezer: Freezer
) -> None:
    with pytest.raises(TimeoutError) as caught:
        await shards.sink.maintain()
    assert freezer.frozen, "shard 0's pass reached the point where its server froze"
    assert not freezer.rescue.finished.is_set(), "given up on by the sink, not thawed"
    assert await shards.made_again()
    assert "storage maintenance of shard 0" in getattr(caught.value, "__notes__", [])


async def test_a_shard_frozen_before_the_pass_is_given_up_on_in_its_time(
    shards: Shards, freezer: Freezer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pass's first statement (the session setting) waits for the frozen server too: it
    # must be under the pass's time, not before it.
    monkeypatch.setattr(upkeep, "UPKEEP_SHARD_TIMEOUT_S", 3.0)
    freezer.freeze()
    with pytest.raises(TimeoutError):
        await shards.sink.maintain()
    assert not freezer.rescue.finished.is_set(), "given up on by the sink, not thawed"
    assert await shards.made_again()


async def test_a_pass_on_a_hung_shard_ends_at_once_when_cancelled(
    shards: Shards, freezer: Freezer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's stop cancels the upkeep: it must not wait for the frozen server either. With
    # the shard's own time out of reach, only the cancel can end the pass before the thaw.
    monkeypatch.setattr(upkeep, "UPKEEP_SHARD_TIMEOUT_S", 1000.0)
    passing = asyncio.create_task(shards.sink.maintain())
    await freezer.froze.wait()
    passing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await passing
    assert not freezer.rescue.finished.is_set(), "ended by the cancel, not by the thaw"


async def test_a_pass_given_up_on_ends_on_the_server_too(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server slow but alive: the pass waits for the partitions' lock, which another session
    holds, past its time. Its connection is closed; the server must end the pass's statement
    within seconds (client_connection_check_interval), not keep it waiting for the lock until
    statement_timeout (60 s), ahead of the writers that need the same lock."""
    await ps.migrate_database(fresh_database)
    monkeypatch.setattr(upkeep, "UPKEEP_SHARD_TIMEOUT_S", 2.0)
    sink = StorageSink.from_settings(
        load_settings(environ={"NEV_POSTGRES_DSN": fresh_database}), metrics=PipelineMetrics()
    )
    await sink.start()
    holder = await asyncpg.connect(fresh_database)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
            with pytest.raises(TimeoutError):
                await sink.maintain()

            async def pass_gone() -> bool:
                waiting: int = await holder.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event = 'advisory' AND pid <> pg_backend_pid()"
                )
                return waiting == 0

            await ps.until(pass_gone, timeout_s=15, what="the given-up pass's backend to end")
    finally:
        await holder.close()
        await sink.close()


async def housekeeping_line(shards: Shards, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """The worker's housekeeping (``LagReporter._maintain``) over ``shards``' sink: the one
    line it logs."""
    worker = SimpleNamespace(sink=shards.sink, metrics=PipelineMetrics())
    reporter = LagReporter(worker, group_id="g", interval_s=1.0)
    with caplog.at_level("INFO", logger="ingest.pipeline.lag"):
        await reporter._maintain()
    (record,) = [r for r in caplog.records if r.name == "ingest.pipeline.lag"]
    return record


async def test_a_hung_shards_upkeep_is_logged_as_one_line_naming_it(
    shards: Shards,
    freezer: Freezer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's housekeeping logs a shard's failed pass as one warning: which shard, what
    timed out after how long, what to check; no traceback (it logged the exception, whose
    text a bare TimeoutError leaves empty, with its traceback)."""
    monkeypatch.setattr(upkeep, "UPKEEP_SHARD_TIMEOUT_S", 3.0)
    freezer.freeze()
    record = await housekeeping_line(shards, caplog)
    assert record.exc_info is None and record.levelname == "WARNING"
    line = record.getMessage()
    assert "storage maintenance of shard 0: TimeoutError: no answer within 3 s" in line, line
    assert "check that the shard's database is up" in line, line


async def test_a_shard_without_a_free_connection_is_named_with_the_wait(
    shards: Shards, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every connection of shard 1's pool taken (a shard whose writes hang holds them): the
    upkeep's and the moved-entity lookup's waits for one end in a bare TimeoutError, which
    was logged as "shard 1: " with nothing after it. Both now say what waited and how long."""
    monkeypatch.setattr(upkeep, "UPKEEP_SHARD_TIMEOUT_S", 1.0)
    monkeypatch.setattr(shards.sink._replay, "step_timeout_s", 1.0)
    pool = shards.sink.writer_of(1).pool
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        record = await housekeeping_line(shards, caplog)
        assert record.exc_info is None
        line = record.getMessage()
        assert "storage maintenance of shard 1: TimeoutError: no connection within 1 s" in line
        with pytest.raises(TransientSinkError) as caught:
            await shards.sink._restore_moved(SimpleNamespace(shard=1))  # type: ignore[arg-type]
        said = str(caught.value)
        assert said.startswith("shard 1: the lookup of the batch's entities moved"), said
        assert "TimeoutError: no connection within 1 s" in said, said
    finally:
        for conn in held:
            await pool.release(conn)
