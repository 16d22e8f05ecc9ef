"""The native decoders build the contract's objects directly (native/src/py_alloc.rs): each
class passes the layout checks, so the agreement tests exercise that path and not the
Python-call fallback; the objects hold their references as Python's own do; and a class that
does not pass the checks still decodes, through the Python calls."""

from __future__ import annotations

import gc
import itertools
import subprocess
import sys
import textwrap
import tracemalloc

import nev_native
import pytest

from contract.battery import PackAlarmRow, PackFrameRows, PackTelemetryRow
from contract.charger import (
    ChargerFaultRow,
    ChargerRows,
    ChargerTelemetryRow,
    ChargingSessionRow,
    ConnectorStatusRow,
)
from contract.rows import AlarmRow, FrameRows, MotorRow, PackRow, VehicleRow
from devtools.sim.bench_frames import frames_of_kind
from ingest.decoders.battery.fast import decode_pack_rows_batch
from ingest.decoders.charger.fast import decode_charger_rows_batch
from ingest.decoders.fast import decode_rows_batch

pytestmark = pytest.mark.unit

START_MS = 1_780_000_000_000
CLASSES = (
    FrameRows,
    VehicleRow,
    MotorRow,
    PackRow,
    AlarmRow,
    ChargerRows,
    ChargerTelemetryRow,
    ChargingSessionRow,
    ConnectorStatusRow,
    ChargerFaultRow,
    PackFrameRows,
    PackTelemetryRow,
    PackAlarmRow,
)


def _frames(kind: str, n: int) -> list[bytes]:
    pairs = frames_of_kind(kind, n, 1, start_ms=START_MS)
    return [frame for _key, frame in itertools.islice(pairs, n)]


def test_every_contract_class_is_built_directly() -> None:
    layouts = dict(nev_native.direct_layouts())
    assert sorted(layouts) == sorted(str(cls) for cls in CLASSES)
    assert [name for name, direct in layouts.items() if not direct] == []


def test_directly_built_objects_are_whole_and_typed() -> None:
    (rows,) = decode_rows_batch(_frames("vehicle", 1), [START_MS])
    assert type(rows) is FrameRows
    for name in FrameRows.__slots__:
        getattr(rows, name)  # every slot set: none raises AttributeError
    vehicle = rows.vehicle
    assert type(vehicle) is VehicleRow and len(vehicle) == len(VehicleRow._fields)
    assert vehicle._replace(soc_pct=1).soc_pct == 1  # a NamedTuple's own methods work
    assert type(rows.motors[0]) is MotorRow and type(rows.packs[0]) is PackRow


def test_decoding_again_and_again_keeps_no_objects_and_no_references() -> None:
    batches = [
        (decode, frames, [START_MS + i for i in range(len(frames))])
        for decode, frames in (
            (decode_rows_batch, _frames("vehicle", 300)),
            (decode_charger_rows_batch, _frames("charger", 300)),
            (decode_pack_rows_batch, _frames("battery", 300)),
        )
    ]
    for decode, frames, received in batches:  # the caches of ids and times fill once
        decode(frames, received)
    gc.collect()
    # Each instance holds a reference to its class: a missing or extra one shows here.
    classes_before = [sys.getrefcount(cls) for cls in CLASSES]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            for decode, frames, received in batches:
                decode(frames, received)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(cls) for cls in CLASSES] == classes_before
    # One object leaked per row would be 18,000 objects or more here: over a megabyte.
    assert grown < 64 * 1024, f"{grown} bytes kept after 20 decodes of 3 x 300 frames"


def test_a_class_that_fails_the_checks_is_built_through_python_calls() -> None:
    # A fresh interpreter: the classes are checked on the first decode. Subclasses with an
    # instance __dict__ fail them (a row no longer laid out as a tuple; slots not the class's
    # own); their objects must still come out whole and equal to the direct path's.
    script = textwrap.dedent(
        f"""
        import itertools
        import contract.rows as rows
        from devtools.sim.bench_frames import frames_of_kind
        frame = next(frames_of_kind("vehicle", 1, 1, start_ms={START_MS}))[1]

        class LooseFrame(rows.FrameRows):
            pass

        class LooseVehicle(rows.VehicleRow):
            pass

        DirectFrame, DirectVehicle = rows.FrameRows, rows.VehicleRow
        rows.FrameRows, rows.VehicleRow = LooseFrame, LooseVehicle
        import nev_native
        (loose,) = nev_native.decode_vehicle_batch([frame], [{START_MS}])
        layouts = dict(nev_native.direct_layouts())
        assert layouts[str(LooseFrame)] is False, layouts
        assert layouts[str(LooseVehicle)] is False, layouts
        assert layouts[str(rows.MotorRow)] is True, layouts
        assert type(loose) is LooseFrame and type(loose.vehicle) is LooseVehicle
        loose.extra = 1  # a __dict__: the Python path's object
        plain = lambda v: tuple(v) if isinstance(v, tuple) else v
        print(repr([plain(getattr(loose, s)) for s in DirectFrame.__slots__]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    (direct,) = nev_native.decode_vehicle_batch(_frames("vehicle", 1), [START_MS])
    assert isinstance(direct, FrameRows)
    values = [getattr(direct, s) for s in FrameRows.__slots__]
    assert done.stdout.strip() == repr([tuple(v) if isinstance(v, tuple) else v for v in values])
