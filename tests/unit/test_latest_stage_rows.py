"""What the hot path stages for latest_state (``storage.loaders.newest_of``): each VIN's newest
native vehicle tuple, once, in VIN order; and when that holds (``stages_unique``)."""

from __future__ import annotations

import pytest

from storage.loaders import newest_of, stages_unique
from tests.latest_stage_frames import python_built, shuffled_batches, vehicle_rows

pytestmark = pytest.mark.unit


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
