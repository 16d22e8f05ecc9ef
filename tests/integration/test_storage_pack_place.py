"""A pack's place in latest_state goes with its lifecycle stage, with both loaders: a report
of another stage without a site leaves no stale site beside it; a report of the same stage
without a site keeps the site (an unknown site is not a new place)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contract.clock import CHINA_TZ
from storage import StorageWriter
from tests.integration.kinds_frames import pack_realtime
from tests.integration.test_storage_kinds import BAT, Batch

pytestmark = pytest.mark.integration

T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=2)
STATION = "SWAP-SH-001"


@pytest.fixture
def writer(loader_writer: StorageWriter) -> StorageWriter:
    return loader_writer


async def _place(w: StorageWriter) -> tuple[int, str | None]:
    async with w.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT lifecycle_stage, place_id FROM latest_state")
    assert row is not None
    return row[0], row[1]


async def _write(w: StorageWriter, reports: list[tuple[int, int, str | None]], at: int) -> None:
    b = Batch()
    for minute, stage, site in reports:
        b.add(BAT, pack_realtime(T0 + timedelta(minutes=minute), stage=stage, site=site))
    await b.write(w, start={BAT: at} if at else None)


async def test_the_place_goes_with_the_stage_batch_by_batch(writer: StorageWriter) -> None:
    await _write(writer, [(0, 2, STATION)], 0)
    await _write(writer, [(1, 2, None)], 1)  # the station's report without its site
    assert await _place(writer) == (2, STATION)
    await _write(writer, [(5, 1, None)], 2)  # in a vehicle now, which one unsaid
    assert await _place(writer) == (1, None)


async def test_the_place_goes_with_the_stage_within_a_batch(writer: StorageWriter) -> None:
    await _write(writer, [(0, 2, STATION), (1, 2, None)], 0)
    assert await _place(writer) == (2, STATION)
    await _write(writer, [(2, 2, None), (5, 1, None), (6, 1, None)], 2)
    assert await _place(writer) == (1, None)


async def test_a_stage_left_and_back_within_a_batch_leaves_no_stale_site(
    writer: StorageWriter,
) -> None:
    # Stage 1 then stage 2 again, neither with a site: as batch by batch, no site is known (the
    # stored station's must not come back because the stage ends where it was).
    await _write(writer, [(0, 2, STATION)], 0)
    await _write(writer, [(1, 1, None), (2, 2, None)], 1)
    assert await _place(writer) == (2, None)


async def test_a_new_pack_whose_stage_changed_in_its_first_batch_has_no_site(
    writer: StorageWriter,
) -> None:
    await _write(writer, [(0, 2, STATION), (1, 1, None)], 0)
    assert await _place(writer) == (1, None)
