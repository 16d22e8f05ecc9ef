"""Native vehicle frames for the tests of the latest_state stage (storage.loaders): many VINs,
several frames per VIN in one batch, in no order."""

from __future__ import annotations

import random
import time
from typing import Final

from contract.rows import FrameRows
from devtools.sim.bench_frames import realtime_frames
from ingest.decoders.fast import decode_rows_batch
from storage.batch import rows_by_table
from storage.tables import VEHICLES, TableRows

__all__ = ["VEHICLE_COUNT", "python_built", "shuffled_batches", "vehicle_rows"]

VEHICLE_COUNT: Final = 12
PER_VEHICLE: Final = 9
BATCHES: Final = 3
START_MS: Final = (int(time.time()) - 3600) * 1000


def shuffled_batches(seed: int) -> list[list[FrameRows]]:
    """``BATCHES`` batches of the same frames, shuffled: a later batch may hold a VIN's older
    frames than an earlier one."""
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


def python_built(batches: list[list[FrameRows]]) -> list[list[FrameRows]]:
    """Every other frame without its native tuples: the writer encodes its rows itself."""
    for frames in batches:
        for f in frames[::2]:
            f.copy = None
    return batches
