"""The writer's work while the server loads a batch's rows (``Loader.load``'s ``meanwhile``,
``storage.writer._Early``): once per attempt, and a failure of it is not a bad row."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.sim.synthetic import frame_rows, vin
from storage.isolate import Attempt, LoadBatch, load_isolating
from storage.latest_pending import PendingLatest
from storage.offsets import OffsetRange
from storage.params import LoaderKind, WriterParams
from storage.tables import Table
from storage.writer import _Early

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, tzinfo=UTC)
TP = ("t", 0)


class Conn:
    """Savepoints that do nothing: what ``load_isolating`` asks of a connection here."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


class Loader:
    """Runs ``meanwhile`` as the COPY loader's piece generator does, after every table's
    rows are "sent"; counts the rows it loads."""

    kind = LoaderKind.COPY

    def __init__(self) -> None:
        self.loaded = 0

    async def load(
        self,
        conn: Any,
        schema: str,
        table: Table,
        rows: Sequence[Any],
        *,
        skip_conflicts: bool,
        keep_stage: bool = False,
        meanwhile: Callable[[], None] | None = None,
    ) -> int:
        if not rows:
            return 0
        if meanwhile is not None:
            meanwhile()
        self.loaded += len(rows)
        return len(rows)

    async def latest(
        self,
        conn: Any,
        schema: str,
        entity_kind: str,
        rows: Sequence[Any],
        *,
        skip_conflicts: bool,
    ) -> None:
        raise AssertionError("latest_state is the pending set's here")


class Failing(PendingLatest):
    """A bug in the tuples' bookkeeping: raises the way a value no column holds does."""

    calls = 0

    def batch_deltas(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise OverflowError("cannot convert float infinity to integer")


def early(latest: PendingLatest, n: int) -> tuple[_Early, list[Any]]:
    frames: list[Any] = [frame_rows(vin(i), T0 + timedelta(seconds=i)) for i in range(n)]
    ranges = {TP: OffsetRange(None, n)}
    return _Early(latest, frames, list(range(n)), [TP] * n, ranges, None), frames


async def test_a_failure_of_the_work_is_not_taken_for_bad_rows() -> None:
    latest = Failing(5.0)
    work, frames = early(latest, 8)
    loader = Loader()
    batch = LoadBatch(
        frames=frames,
        sources=[TP] * len(frames),
        kafka_offsets=None,
        raw=None,
        loader=loader,
        schema="nev",
        params=WriterParams(consumer_group="g", latest_interval_ms=5000),
        may_miss_partitions=False,
        latest=False,
        meanwhile=work.run,
    )
    state = Attempt()
    await load_isolating(Conn(), batch, list(range(len(frames))), False, state)
    # Loaded, nothing rejected, nothing bisected; the tuples are left to in_transaction,
    # which takes them again and fails the batch as before this work moved into the load.
    assert state.bad == {} and state.splits == 0 and loader.loaded > 0
    assert latest.calls == 1 and work.deltas is None


def test_the_work_runs_once_per_attempt() -> None:
    latest = PendingLatest(5.0)
    work, frames = early(latest, 3)
    work.run()
    first = work.deltas
    assert first is not None and set(first[TP].vehicles) == {f.vin for f in frames}
    work.run()  # the next table's load
    assert work.deltas is first
