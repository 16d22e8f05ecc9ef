"""latest_state merged from the vehicle stage (``CopyLoader``) on the real PostgreSQL.

The hot path's stage holds the newest native tuple of each VIN, in VIN order, and is merged
without ``DISTINCT ON``. A stage that may hold a VIN twice keeps it: reissues stage every row,
and Python-built rows may repeat a VIN that native tuples have. The three forms end in the same
latest_state on the same batches: frames of many VINs, several per VIN in a batch, in no
order, and some older than what an earlier batch stored.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contract.rows import FrameRows
from devtools.sim.bench_frames import realtime_frames
from ingest.decoders.fast import decode_rows_batch
from storage import PoolParams
from storage.batch import rows_by_table
from storage.connect import connect
from storage.loaders import CopyLoader, newest_of, stages_unique
from storage.params import DEFAULT_SCHEMA
from storage.tables import VEHICLES, TableRows
from tests.integration.recording import Recording

pytestmark = pytest.mark.integration

VEHICLE_COUNT, PER_VEHICLE, BATCHES = 12, 9, 3
START_MS = (int(time.time()) - 3600) * 1000


@pytest.fixture
async def conn(migrated_database: str) -> AsyncIterator[Any]:
    c = await connect(PoolParams(dsn=migrated_database))
    try:
        yield c
    finally:
        await c.close()


def shuffled_batches(seed: int) -> list[list[FrameRows]]:
    values = [raw for _, raw in realtime_frames(VEHICLE_COUNT, PER_VEHICLE, start_ms=START_MS)]
    decoded = decode_rows_batch(values, [START_MS + 5_000] * len(values))
    frames = [f for f in decoded if isinstance(f, FrameRows)]
    assert len(frames) == len(values) and all(f.copy is not None for f in frames)
    random.Random(seed).shuffle(frames)
    size = len(frames) // BATCHES
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def vehicle_rows(frames: list[FrameRows]) -> TableRows:
    for table, rows in rows_by_table(frames, range(len(frames))):
        if table is VEHICLES:
            assert isinstance(rows, TableRows)
            return rows
    raise AssertionError("no vehicle rows")


async def merge_all(
    conn: Any, batches: list[list[FrameRows]], *, skip: bool
) -> tuple[list[str], list[dict[str, Any]]]:
    """Load and merge each batch in its own transaction, as storage/isolate.py does; returns
    the statements that went to latest_state and the state they left."""
    await conn.execute(
        f"TRUNCATE {DEFAULT_SCHEMA}.vehicle_telemetry, {DEFAULT_SCHEMA}.latest_state"
    )
    rec, loader = Recording(conn), CopyLoader()
    for frames in batches:
        rows = vehicle_rows(frames)
        async with conn.transaction():
            await loader.load(
                rec, DEFAULT_SCHEMA, VEHICLES, rows, skip_conflicts=skip, keep_stage=True
            )
            await loader.latest(rec, DEFAULT_SCHEMA, "vehicle", rows, skip_conflicts=skip)
    merges = [s for s in rec.statements if "latest_state" in s]
    state = await conn.fetch(
        f"SELECT * FROM {DEFAULT_SCHEMA}.latest_state WHERE entity_kind = 'vehicle' "
        "ORDER BY entity_id"
    )
    return merges, [{k: v for k, v in r.items() if k != "updated_at"} for r in state]


def python_built(batches: list[list[FrameRows]]) -> list[list[FrameRows]]:
    """Every other frame without its native tuples: the writer encodes its rows itself."""
    for frames in batches:
        for f in frames[::2]:
            f.copy = None
    return batches


def test_the_hot_path_stages_one_row_per_vin_in_vin_order() -> None:
    frames = shuffled_batches(7)[0]
    rows = vehicle_rows(frames)
    newest = newest_of(rows)
    vins = [r.vin for r in newest]
    assert vins == sorted({f.vin for f in frames})
    assert [f.vin for f in newest.native] == vins
    for row in newest:
        assert row.ts == max(f.vehicle.ts for f in frames if f.vin == row.vin and f.vehicle)
    assert stages_unique(rows, skip_conflicts=False)
    assert not stages_unique(rows, skip_conflicts=True)
    assert not stages_unique(vehicle_rows(python_built([frames])[0]), skip_conflicts=False)


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_three_stage_forms_end_in_the_same_latest_state(conn: Any, seed: int) -> None:
    unique_sql, unique_state = await merge_all(conn, shuffled_batches(seed), skip=False)
    skip_sql, skip_state = await merge_all(conn, shuffled_batches(seed), skip=True)
    mixed_sql, mixed_state = await merge_all(conn, python_built(shuffled_batches(seed)), skip=False)

    assert unique_sql and not any("DISTINCT ON" in s for s in unique_sql)
    assert skip_sql and all("DISTINCT ON" in s for s in skip_sql)
    assert mixed_sql and all("DISTINCT ON" in s for s in mixed_sql)
    assert unique_state == skip_state == mixed_state
    # and that state is each VIN's newest frame
    newest: dict[str, Any] = {}
    for frames in shuffled_batches(seed):
        for f in frames:
            if f.vehicle is not None and (f.vin not in newest or f.vehicle.ts > newest[f.vin]):
                newest[f.vin] = f.vehicle.ts
    assert {r["entity_id"]: r["ts"] for r in unique_state} == newest
    assert len(newest) == VEHICLE_COUNT
