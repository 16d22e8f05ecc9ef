"""The native decoders build the contract's objects directly (native/src/py_alloc.rs): each
class passes the layout checks, so the agreement tests exercise that path and not the
Python-call fallback, and the objects it builds hold their references like Python's own."""

from __future__ import annotations

import gc
import itertools
import tracemalloc

import nev_native
import pytest

from contract.rows import FrameRows, MotorRow, PackRow, VehicleRow
from devtools.sim.bench_frames import realtime_frames
from ingest.decoders.fast import decode_rows_batch

pytestmark = pytest.mark.unit

START_MS = 1_780_000_000_000


def _frames(n: int) -> list[bytes]:
    return [v for _k, v in itertools.islice(realtime_frames(n, 1, start_ms=START_MS), n)]


def test_every_contract_class_is_built_directly() -> None:
    layouts = dict(nev_native.direct_layouts())
    assert len(layouts) == 13  # FrameRows and 4 rows; ChargerRows and 4; PackFrameRows and 2
    assert [name for name, direct in layouts.items() if not direct] == []


def test_directly_built_objects_are_whole_and_behave_as_built_in_python() -> None:
    (rows,) = decode_rows_batch(_frames(1), [START_MS])
    assert isinstance(rows, FrameRows)
    for name in FrameRows.__slots__:
        getattr(rows, name)  # every slot set: none raises AttributeError
    vehicle = rows.vehicle
    assert type(vehicle) is VehicleRow and len(vehicle) == len(VehicleRow._fields)
    assert vehicle == VehicleRow(*vehicle) and hash(vehicle) == hash(VehicleRow(*vehicle))
    assert vehicle._replace(soc_pct=1).soc_pct == 1
    assert type(rows.motors[0]) is MotorRow and type(rows.packs[0]) is PackRow


def test_decoding_again_and_again_keeps_no_objects() -> None:
    frames = _frames(500)
    received = [START_MS + i for i in range(len(frames))]
    decode_rows_batch(frames, received)  # the caches of VINs and times fill once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            decode_rows_batch(frames, received)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # One object leaked per frame would be 10,000 objects here: hundreds of KB.
    assert grown < 64 * 1024, f"{grown} bytes kept after 20 decodes of {len(frames)} frames"
