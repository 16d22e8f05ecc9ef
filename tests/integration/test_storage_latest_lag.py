"""Bounded-lag latest_state in the writer (storage/latest_pending.py, storage/latest_tx.py) on
the real PostgreSQL, with both loaders: a partition's set waits for its interval (its
``latest_from`` stored with the offset), ``flush_latest`` merges it, the cap merges early, and
a writer that finds ``latest_from`` stored (a crash) knows the range to read again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_storage_kinds import T0, WriterFactory, mixed, writer_factory

pytestmark = pytest.mark.integration

__all__ = ["writer_factory"]  # the fixture, parametrized over the COPY and unnest loaders

HOUR = timedelta(hours=1)


async def latest(conn: Any) -> dict[tuple[str, str], Any]:
    rows = await conn.fetch("SELECT entity_kind, entity_id, ts FROM nev.latest_state")
    return {(r["entity_kind"], r["entity_id"]): r["ts"] for r in rows}


async def latest_from(conn: Any) -> dict[tuple[str, int], int | None]:
    rows = await conn.fetch("SELECT topic, partition, latest_from FROM nev.consumer_offsets")
    return {(r["topic"], r["partition"]): r["latest_from"] for r in rows}


async def test_pending_until_the_interval_then_merged_by_flush(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory(latest_interval_ms=600_000)
    first = mixed(T0)
    r1 = await first.write(w)
    # nothing known of these partitions yet: their first batch merges
    assert r1.latest == 6 and r1.latest_merged == set(first.next)
    async with w.pool.acquire() as conn:
        before = await latest(conn)
        assert len(before) == 6 and set((await latest_from(conn)).values()) == {None}

    second = mixed(T0 + HOUR)  # the same entities, an hour later
    r2 = await second.write(w, start=first.next)
    assert r2.frames == len(second.frames) and r2.latest == 0 and not r2.latest_merged
    async with w.pool.acquire() as conn:
        assert await latest(conn) == before  # behind: the interval has not passed
        assert await latest_from(conn) == first.next  # where the second batch began

    assert await w.flush_latest(list(second.next)) == 6
    async with w.pool.acquire() as conn:
        assert await latest(conn) == {k: ts + HOUR for k, ts in before.items()}
        assert set((await latest_from(conn)).values()) == {None}

    # A writer starting on these partitions after a crash would find nothing to refill.
    again = await writer_factory(latest_interval_ms=600_000)
    await again.load_offsets(list(second.next))
    assert all(p.seek_from is None for p in again.latest.parts.values())


async def test_a_crash_leaves_the_range_to_read_again(writer_factory: WriterFactory) -> None:
    w = await writer_factory(latest_interval_ms=600_000)
    first = mixed(T0)
    await first.write(w)
    second = mixed(T0 + HOUR)
    await second.write(w, start=first.next)
    # "crash": this writer's memory is gone; the next one reads latest_from with the offsets
    after = await writer_factory(latest_interval_ms=600_000)
    stored = await after.load_offsets(list(second.next))
    ends = {tp: first.next[tp] + n for tp, n in second.next.items()}
    assert stored == ends
    for tp, p in after.latest.parts.items():
        assert (p.seek_from, p.refill_until) == (first.next[tp], ends[tp])


async def test_the_cap_merges_early(writer_factory: WriterFactory) -> None:
    w = await writer_factory(latest_interval_ms=600_000, latest_cap=1)
    first = mixed(T0)
    await first.write(w)
    second = mixed(T0 + HOUR)
    r2 = await second.write(w, start=first.next)
    assert r2.latest == 6 and r2.latest_merged == set(second.next)
    async with w.pool.acquire() as conn:
        assert max((await latest(conn)).values()) > T0 + HOUR
