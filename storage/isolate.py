"""One load of a batch's frames under a savepoint, and what happens when it fails.

A load that meets a row already stored (a device sending the same frame twice) is redone
skipping conflicts. A permanent data error (a value a column refuses) is isolated by bisecting
the frames under nested savepoints: the bad frames are left out (``Attempt.bad``), the rest
load. Bisecting is bounded (``bisect_max_loads`` failed loads, ``bisect_max_s``): past the bound
the frames still mixed with a bad one are rejected together, so one batch cannot hold its
partitions for minutes. A load that finds no partition for a frame time (dropped behind the
writer's cache) raises ``NoPartition`` once: the writer refreshes its cache and writes again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.batch import Decoded, rows_by_table
from storage.errors import ErrorKind, StorageError, classify
from storage.latest_kinds import BATTERY, CHARGER, battery_values, charger_values, upsert
from storage.loaders import Loader
from storage.offsets import TopicPartition
from storage.params import LoaderKind, WriterParams
from storage.tables import CHARGER_TELEMETRY, CONNECTOR_STATUS, PACK_TELEMETRY, VEHICLES, Table

__all__ = ["Attempt", "LoadBatch", "NoPartition", "load_isolating"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Attempt:
    """State of one write_batch call; ``bad`` survives retries (data errors are permanent)."""

    bad: dict[int, BaseException] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    fallbacks: int = 0
    latest: int = 0
    splits: int = 0  # failed loads that were bisected (kept across retries: same frames)
    deadline: float = 0.0  # perf_counter after which bisecting stops
    refreshed: bool = False  # the partition cache was refreshed after a missing partition
    created: int = 0  # partitions created on demand

    def reset(self) -> None:
        self.rows.clear()
        self.skipped = 0
        self.fallbacks = 0
        self.latest = 0


class NoPartition(Exception):
    """A load met a time without a partition although the cache said it exists."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBatch:
    """What every load of one transaction shares: the frames and where they came from."""

    frames: Sequence[Decoded]  # the kinds may be mixed
    sources: list[TopicPartition]  # (topic, partition) of each frame
    kafka_offsets: Sequence[int] | None
    raw: Sequence[bytes] | None  # archived in raw_frames when given
    loader: Loader
    schema: str
    params: WriterParams
    may_miss_partitions: bool  # partitions on demand (plain PostgreSQL): raise NoPartition
    latest: bool = True  # merge latest_state with each load (False: storage/latest_pending.py)
    # The writer's own work on the batch, run while the server loads rows (``Loader.load``);
    # once: the loads after the first one find it done.
    meanwhile: Callable[[], None] | None = None


async def load_isolating(
    conn: Any, batch: LoadBatch, indices: list[int], skip: bool, state: Attempt
) -> None:
    """Load the frames ``indices`` under a savepoint; bisect on data errors."""
    tables = rows_by_table(
        batch.frames,
        indices,
        raw=batch.raw,
        sources=batch.sources,
        kafka_offsets=batch.kafka_offsets,
        entity_kind=batch.params.entity_kind,
    )
    counts: dict[str, int] = {}
    skipped = latest = 0
    try:
        async with conn.transaction():  # a savepoint: a failure undoes only this load
            for table, rows in tables:
                vehicles = table is VEHICLES and batch.latest
                n = await batch.loader.load(
                    conn,
                    batch.schema,
                    table,
                    rows,
                    skip_conflicts=skip,
                    keep_stage=vehicles,
                    meanwhile=batch.meanwhile,
                )
                counts[table.name] = n
                skipped += len(rows) - n
                if vehicles:
                    await batch.loader.latest(
                        conn, batch.schema, batch.params.entity_kind, rows, skip_conflicts=skip
                    )
                    latest += len({r.vin for r in rows})
            if batch.latest:
                latest += await _latest_of_kinds(conn, batch.schema, tables, batch.loader.kind)
    except Exception as exc:
        kind = classify(exc)
        if kind is ErrorKind.DUPLICATE and not skip:
            state.fallbacks += 1
            log.info(
                "%d frames meet rows already stored (%s); loading them skipping conflicts",
                len(indices),
                exc,
            )
            await load_isolating(conn, batch, indices, True, state)
            return
        if kind is ErrorKind.DATA:
            if batch.may_miss_partitions and not state.refreshed and _no_partition(exc):
                raise NoPartition(f"no partition for a frame time ({exc})") from exc
            if len(indices) == 1:
                state.bad[indices[0]] = exc
                log.warning("frame %d rejected by the database: %s", indices[0], exc)
                return
            if (
                state.splits >= batch.params.bisect_max_loads
                or time.perf_counter() > state.deadline
            ):
                # Bounded: these frames stay mixed with a bad one; all go to the DLQ.
                detail = StorageError(
                    f"not isolated (bisect bound reached, {state.splits} loads); "
                    f"the batch's error: {type(exc).__name__}: {exc}"
                )
                for i in indices:
                    state.bad[i] = detail
                log.warning(
                    "bisect bound reached: %d frames rejected unisolated: %s",
                    len(indices),
                    exc,
                )
                return
            state.splits += 1
            mid = len(indices) // 2
            for half in (indices[:mid], indices[mid:]):
                await load_isolating(conn, batch, half, skip, state)
            return
        raise
    for name, n in counts.items():
        state.rows[name] = state.rows.get(name, 0) + n
    state.skipped += skipped
    state.latest += latest


async def _latest_of_kinds(
    conn: Any, schema: str, tables: list[tuple[Table, list[Any]]], loader: LoaderKind
) -> int:
    """latest_state of the connectors and packs whose rows were just loaded."""
    copy = loader is LoaderKind.COPY  # COPY FROM STDIN: the staging form (storage/latest_kinds)
    rows = {t.name: r for t, r in tables}
    statuses = rows.get(CONNECTOR_STATUS.name, [])
    telemetry = rows.get(CHARGER_TELEMETRY.name, [])
    packs = rows.get(PACK_TELEMETRY.name, [])
    n = 0
    if statuses or telemetry:
        n += await upsert(conn, schema, CHARGER, charger_values(statuses, telemetry), copy=copy)
    if packs:
        n += await upsert(conn, schema, BATTERY, battery_values(packs), copy=copy)
    return n


def _no_partition(exc: BaseException) -> bool:
    # 23514 is check_violation; PostgreSQL raises it with this text for a missing partition.
    return getattr(exc, "sqlstate", None) == "23514" and "no partition" in str(exc)
