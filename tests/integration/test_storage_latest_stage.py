"""latest_state merged from the vehicle stage (``CopyLoader``) on the real PostgreSQL.

The hot path's stage holds the newest native tuple of each VIN, in VIN order, and is merged
without ``DISTINCT ON``. A stage that may hold a VIN twice keeps it: reissues stage every row,
and Python-built rows may repeat a VIN that native tuples have. The three forms end in the same
latest_state on the same batches: frames of many VINs, several per VIN in a batch, in no
order, and some older than what an earlier batch stored. Through the writer, a batch that
meets rows already stored is loaded again skipping them, with the full stage and its
``DISTINCT ON``.
"""

from __future__ import annotations

from typing import Any

import pytest

from contract.rows import FrameRows
from storage import LoaderKind, OffsetRange, PoolParams, RetryParams, StorageWriter, WriterParams
from storage.loaders import CopyLoader
from storage.params import DEFAULT_SCHEMA
from storage.tables import VEHICLES
from tests.integration.recording import Recording
from tests.latest_stage_frames import (
    VEHICLE_COUNT,
    python_built,
    shuffled_batches,
    vehicle_rows,
)

pytestmark = pytest.mark.integration

STAGE = "nev_stage_vehicle_telemetry"
TP = ("nev.vehicle.raw", 0)


@pytest.fixture
def conn(migrated_conn: Any) -> Any:
    return migrated_conn


async def merge_all(
    conn: Any, batches: list[list[FrameRows]], *, skip: bool
) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Load and merge each batch in its own transaction, as storage/isolate.py does; returns
    the statements that went to latest_state, the VINs staged for each batch (in the order a
    scan of the stage gives them) and the state the merges left."""
    await conn.execute(
        f"TRUNCATE {DEFAULT_SCHEMA}.vehicle_telemetry, {DEFAULT_SCHEMA}.latest_state"
    )
    rec, loader = Recording(conn), CopyLoader()
    staged: list[list[str]] = []
    for frames in batches:
        rows = vehicle_rows(frames)
        async with conn.transaction():
            await loader.load(
                rec, DEFAULT_SCHEMA, VEHICLES, rows, skip_conflicts=skip, keep_stage=True
            )
            staged.append([r["vin"] for r in await conn.fetch(f"SELECT vin FROM {STAGE}")])
            await loader.latest(rec, DEFAULT_SCHEMA, "vehicle", rows, skip_conflicts=skip)
    merges = [s for s in rec.statements if "latest_state" in s]
    return merges, staged, await latest_state(conn)


async def latest_state(conn: Any) -> list[dict[str, Any]]:
    state = await conn.fetch(
        f"SELECT * FROM {DEFAULT_SCHEMA}.latest_state WHERE entity_kind = 'vehicle' "
        "ORDER BY entity_id"
    )
    return [{k: v for k, v in r.items() if k != "updated_at"} for r in state]


def newest_ts(batches: list[list[FrameRows]]) -> dict[str, Any]:
    newest: dict[str, Any] = {}
    for frames in batches:
        for f in frames:
            if f.vehicle is not None and (f.vin not in newest or f.vehicle.ts > newest[f.vin]):
                newest[f.vin] = f.vehicle.ts
    return newest


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_three_stage_forms_end_in_the_same_latest_state(conn: Any, seed: int) -> None:
    unique_sql, unique_staged, unique_state = await merge_all(
        conn, shuffled_batches(seed), skip=False
    )
    skip_sql, skip_staged, skip_state = await merge_all(conn, shuffled_batches(seed), skip=True)
    mixed_sql, _, mixed_state = await merge_all(
        conn, python_built(shuffled_batches(seed)), skip=False
    )

    # the hot path stages each VIN once, in VIN order, and reads the stage as it is
    for frames, vins in zip(shuffled_batches(seed), unique_staged, strict=True):
        assert vins == sorted({f.vin for f in frames})
    assert unique_sql and not any("DISTINCT ON" in s for s in unique_sql)
    # skipping conflicts stages every row (VINs repeat): DISTINCT ON picks each one's newest
    assert [len(v) for v in skip_staged] == [len(b) for b in shuffled_batches(seed)]
    assert skip_sql and all("DISTINCT ON" in s for s in skip_sql)
    assert mixed_sql and all("DISTINCT ON" in s for s in mixed_sql)
    assert unique_state == skip_state == mixed_state
    assert {r["entity_id"]: r["ts"] for r in unique_state} == newest_ts(shuffled_batches(seed))
    assert len(unique_state) == VEHICLE_COUNT


async def test_a_batch_meeting_stored_rows_merges_each_vins_newest(migrated_database: str) -> None:
    # The writer's fallback (storage/isolate.py): the batch's COPY meets a stored row, and the
    # batch is loaded again skipping conflicts, which stages every row: its merge must keep
    # DISTINCT ON, or a VIN's older row could win.
    params = WriterParams(
        consumer_group="g", loader=LoaderKind.COPY, retry=RetryParams(attempts=3, initial=0.01)
    )
    writer = await StorageWriter.open(PoolParams(dsn=migrated_database), params)
    try:
        first, second, _ = shuffled_batches(3)
        done = await writer.write_batch(first, {TP: OffsetRange(None, len(first))})
        assert done.conflict_fallbacks == 0
        again = [first[0], *second]  # one frame stored already, then many per VIN
        end = len(first) + len(again)
        result = await writer.write_batch(again, {TP: OffsetRange(len(first), end)})
        assert result.conflict_fallbacks == 1 and result.committed == {TP: end}
        async with writer.pool.acquire() as conn:
            state = await latest_state(conn)
    finally:
        await writer.close()
    assert {r["entity_id"]: r["ts"] for r in state} == newest_ts([first, second])
