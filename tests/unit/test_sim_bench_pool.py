"""bench_frames beyond its pool (3,000,000 devices in a scale run): a device's frames are a
template device's with the device's own identity written in. They must still be real frames
of that device: decodable, carrying its id everywhere the template carried the template's
(header, connector ids, order numbers, pack code), and each (device, time) once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devtools.sim import bench_frames
from ingest.decoders.battery import decode_pack_rows
from ingest.decoders.charger import decode_charger_rows
from ingest.decoders.fast import decode_rows

pytestmark = pytest.mark.unit

START_MS = time.time_ns() // 1_000_000 - 3_600_000


def _identity(kind: str, value: bytes) -> tuple[str, list[str]]:
    """The device id a frame decodes to, and every connector id in it (chargers)."""
    if kind == "vehicle":
        return decode_rows(value).vin, []
    if kind == "charger":
        rows: Any = decode_charger_rows(value)
        ids = [s.connector_id for s in rows.statuses] + [t.connector_id for t in rows.telemetry]
        return rows.charger_id, ids
    return decode_pack_rows(value).pack_code, []


@pytest.mark.parametrize("kind", bench_frames.KINDS)
def test_devices_beyond_the_pool_are_derived_with_their_own_identity(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_frames, "POOL", 4)
    monkeypatch.setattr(bench_frames, "TEMPLATE_DEVICES", 3)
    pairs = list(bench_frames.frames_of_kind(kind, 10, 2, start_ms=START_MS))
    seen = set()
    for key, value in pairs:
        ident, connectors = _identity(kind, value)
        assert ident == key.decode()  # not the template device's
        assert all(c.startswith(ident) for c in connectors), connectors
        assert connectors or kind != "charger"  # a pile's frame names its connectors
        seen.add((key, value[24:30]))  # (device, frame time)
    assert len({key for key, _ in pairs}) == 10
    assert len(seen) == len(pairs) == 20
    # device 4 reuses template device 1's frames: same bytes but the identity and the BCC
    by_key = {key: value for key, value in pairs[:10]}
    one, four = by_key[bench_frames._IDENTITIES[kind](1)], by_key[bench_frames._IDENTITIES[kind](4)]
    assert len(one) == len(four) and one != four
