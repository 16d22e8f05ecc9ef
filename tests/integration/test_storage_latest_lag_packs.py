"""A pack's latest_state with ``storage.latest_interval_ms`` > 0 (storage/latest_pending.py) is
the one merging with every batch gives (interval 0): the same pack frames, in the same
batches, written once by each writer and the deferred one flushed at the same points, leave
the same row - stage changes across merges (the place goes with the stage,
latest_kinds.KindLatest.paired) and reports of one frame time included."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from storage.latest_kinds import BATTERY
from storage.writer import StorageWriter
from tests.integration.kinds_frames import pack_realtime
from tests.integration.test_storage_kinds import T0, Batch, WriterFactory, writer_factory

pytestmark = pytest.mark.integration

__all__ = ["writer_factory"]  # the fixture, parametrized over the COPY and unnest loaders

# One report: (seconds after the scenario's start, lifecycle stage, site id, SOC).
Report = tuple[int, int | None, str | None, int | None]
Batches = list[list[Report]]  # the batches between two merges of the deferred writer
A, B = "SWAP-SH-001", "SWAP-SH-002"
PER_BATCH, DEFERRED = ("nev.battery.raw", 0), ("nev.battery.raw", 1)
COLUMNS = ", ".join(c for c, _ in BATTERY.columns)


def code(n: int) -> str:
    """A GB/T 34014 pack code, ``n`` its serial number."""
    return f"CATPEA1TRACE01E3F{n:07d}"


class Lane:
    """One writer's partition: batches written at the partition's next offsets."""

    def __init__(self, writer: StorageWriter, tp: tuple[str, int]) -> None:
        self.writer, self.tp = writer, tp
        self.next: int | None = None  # None: the partition's first batch

    async def write(self, pack: str, start: datetime, reports: list[Report]) -> None:
        b = Batch()
        for second, stage, site, soc in reports:
            when = start + timedelta(seconds=second)
            b.add(self.tp, pack_realtime(when, pack, stage=stage, site=site, soc=soc))
        at = self.next or 0
        b.offsets = list(range(at, at + len(reports)))
        await b.write(self.writer, start=None if self.next is None else {self.tp: at})
        self.next = at + len(reports)


async def _row(w: StorageWriter, pack: str) -> tuple[Any, ...]:
    async with w.pool.acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM nev.latest_state WHERE entity_kind = 'battery'"
            " AND entity_id = $1",
            pack,
        )
    assert row is not None
    return tuple(row)


async def _both(writer_factory: WriterFactory) -> tuple[Lane, Lane]:
    every = await writer_factory(group="per-batch")
    deferred = await writer_factory(group="deferred", latest_interval_ms=600_000)
    return Lane(every, PER_BATCH), Lane(deferred, DEFERRED)


async def _same_state(
    every: Lane, deferred: Lane, n: int, merges: list[Batches]
) -> tuple[Any, ...]:
    """Write ``merges`` with both writers (the deferred one merging after each) under pack
    codes of their own; assert the two latest_state rows are the same, and return it."""
    start = T0 + timedelta(minutes=n)  # T0 is 2 hours ago: every scenario in the past
    mine, theirs = code(2 * n), code(2 * n + 1)
    for batches in merges:
        for reports in batches:
            await every.write(mine, start, reports)
            await deferred.write(theirs, start, reports)
        await deferred.writer.flush_latest([DEFERRED])
    want, got = await _row(every.writer, mine), await _row(deferred.writer, theirs)
    assert got == want, merges
    return got


def _place(state: tuple[Any, ...]) -> tuple[int | None, str | None]:
    return state[BATTERY.index("lifecycle_stage")], state[BATTERY.index("place_id")]


async def test_reports_of_one_time_merge_as_with_every_batch(
    writer_factory: WriterFactory,
) -> None:
    every, deferred = await _both(writer_factory)
    # In one batch the two are one batch's rows: the later one last, its stage change emptying
    # the place (not stage 1 beside the station's site, a mix of the two reports).
    one_batch: list[Batches] = [[[(0, 2, A, 80)]], [[(10, 2, B, 70), (10, 1, None, None)]]]
    assert _place(await _same_state(every, deferred, 0, one_batch)) == (1, None)
    # In two batches the first one stored wins: latest_state's time only moves forward.
    two_batches: list[Batches] = [[[(0, 2, A, 80)]], [[(10, 2, B, 70)], [(10, 1, None, 60)]]]
    state = await _same_state(every, deferred, 1, two_batches)
    assert _place(state) == (2, B) and state[BATTERY.index("soc_pct")] == 70


async def test_a_stage_left_and_back_across_merges_leaves_no_stale_site(
    writer_factory: WriterFactory,
) -> None:
    every, deferred = await _both(writer_factory)
    # At station A, merged; then into a vehicle and back to a station, neither with a site:
    # no site known (A must not come back because the stage ends where it was stored).
    back: list[Batches] = [[[(0, 2, A, 80)]], [[(10, 1, None, 70)], [(20, 2, None, 60)]]]
    assert _place(await _same_state(every, deferred, 2, back)) == (2, None)
    # At A, merged; at B, removed, installed again without a site, all in one interval.
    moved: list[Batches] = [
        [[(0, 2, A, 80)]],
        [[(10, 2, B, 70)], [(20, 1, None, 60), (30, 2, None, 50)]],
    ]
    assert _place(await _same_state(every, deferred, 3, moved)) == (2, None)
    # The same across three merges, the stage change in the middle one.
    three: list[Batches] = [[[(0, 2, A, 80)]], [[(10, 1, None, 70)]], [[(20, 2, None, 60)]]]
    assert _place(await _same_state(every, deferred, 4, three)) == (2, None)


def _scenario(rng: random.Random) -> list[Batches]:
    """Up to 4 merges of up to 3 batches of up to 3 reports: times that repeat and go back,
    stages that change and come back, sites given and left out."""
    merges: list[Batches] = []
    for _ in range(rng.randint(1, 4)):
        batches: Batches = []
        for _ in range(rng.randint(1, 3)):
            reports: list[Report] = []
            for _ in range(rng.randint(1, 3)):
                stage = rng.choice([None, 1, 2, 2, 3])
                site = rng.choice([None, A, B]) if stage is not None else None
                reports.append((rng.randrange(8) * 10, stage, site, rng.choice([None, 50, 60])))
            batches.append(reports)
        merges.append(batches)
    return merges


async def test_any_sequence_of_pack_reports_leaves_what_every_batch_leaves(
    writer_factory: WriterFactory,
) -> None:
    every, deferred = await _both(writer_factory)
    rng = random.Random(32960)
    for n in range(10, 90):
        await _same_state(every, deferred, n, _scenario(rng))


@pytest.mark.parametrize("order", ["older-first", "newer-first"])
async def test_a_pack_pending_on_two_partitions_merges_as_with_every_batch(
    writer_factory: WriterFactory, order: str
) -> None:
    # A pack reporting on two partitions of one writer (it moved between gateways), both
    # partitions' sets merged in one transaction (a stop, a revocation, the idle merge, a
    # batch's due partitions): its tuples go in time order whichever partition comes first,
    # not the older partition's thrown away as an earlier batch's.
    k = order == "newer-first"
    every = await writer_factory(group="per-batch-parts")
    deferred = await writer_factory(group="deferred-parts", latest_interval_ms=600_000)
    start = T0 + timedelta(minutes=100 + k)
    mine, theirs, filler = code(200 + 3 * k), code(201 + 3 * k), code(202 + 3 * k)
    older, newer = ("nev.battery.raw", 4), ("nev.battery.raw", 5)
    e_older, e_newer = Lane(every, ("nev.battery.raw", 6)), Lane(every, ("nev.battery.raw", 7))
    d_older, d_newer = Lane(deferred, older), Lane(deferred, newer)
    # Stored in a vehicle (stage 1); both partitions known to the deferred writer (a
    # partition's first batch merges at once), nothing pending.
    await e_older.write(mine, start, [(0, 1, None, 40)])
    await d_older.write(theirs, start, [(0, 1, None, 40)])
    await d_newer.write(filler, start, [(0, 1, None, 40)])
    await deferred.flush_latest([older, newer])
    # t=10 at station A on one partition, t=20 only a SOC on the other.
    await e_older.write(mine, start, [(10, 2, A, 50)])
    await e_newer.write(mine, start, [(20, None, None, 60)])
    await d_older.write(theirs, start, [(10, 2, A, 50)])
    await d_newer.write(theirs, start, [(20, None, None, 60)])
    await deferred.flush_latest([older, newer] if order == "older-first" else [newer, older])
    want, got = await _row(every, mine), await _row(deferred, theirs)
    assert _place(want) == (2, A) and want[BATTERY.index("soc_pct")] == 60
    assert got == want
