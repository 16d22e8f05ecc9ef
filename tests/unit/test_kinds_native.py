"""The native charger and pack paths (nev_native, native/src/charger.rs and battery.rs) against
the structured decoders, on the simulator's frames (good and damaged, as the pipeline sees
them), and the batch forms (``decode_charger_rows_batch`` / ``decode_pack_rows_batch``):
results in input order, equal to the single-frame path's, a rejected frame as its
``FrameError`` instance with the structured decoder's reason, offset and text, and no panic
(``PanicException``) or other exception on any bytes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nev_native
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.sim.chargers import charger_messages
from devtools.sim.fleet import FleetOptions
from devtools.sim.packs import pack_messages
from ingest.decoders import FrameError
from ingest.decoders.battery import decode_pack_rows, decode_pack_rows_batch
from ingest.decoders.charger import decode_charger_rows, decode_charger_rows_batch
from tests.unit import test_battery_fast, test_charger_fast
from tests.unit.frame_mutations import mutate, reseal
from tests.unit.test_battery_golden import REALTIME_2016, SENTINELS_2025
from tests.unit.test_charger_golden import LOGIN, REALTIME

pytestmark = pytest.mark.unit

OPTIONS = FleetOptions(
    vehicles=1, chargers=6, packs=12, minutes=4, end_ms=1_780_000_000_000, bad_ratio=0.05
)
CHARGER_MESSAGES = list(charger_messages(OPTIONS))
PACK_MESSAGES = list(pack_messages(OPTIONS))
CHARGER_FRAMES = [m.value for m in CHARGER_MESSAGES]
PACK_FRAMES = [m.value for m in PACK_MESSAGES]
T0_MS = 1_772_323_201_000  # the fast tests' RECEIVED, 2026-03-01T00:00:01Z

Single = Callable[[bytes, datetime | None], Any]
Batch = Callable[[Sequence[bytes], Sequence[int]], list[Any]]
KINDS: dict[str, tuple[Single, Batch, Callable[[Any], dict[str, Any]]]] = {
    "charger": (decode_charger_rows, decode_charger_rows_batch, test_charger_fast.as_data),
    "battery": (decode_pack_rows, decode_pack_rows_batch, test_battery_fast.as_data),
}


def _single(kind: str, raw: bytes, ms: int) -> dict[str, Any] | tuple[str, int, str]:
    """The single-frame path's answer as plain data: the rows, or the error's three parts."""
    single, _, as_data = KINDS[kind]
    try:
        return as_data(single(raw, datetime.fromtimestamp(ms / 1000, UTC)))
    except FrameError as exc:
        return (exc.reason, exc.offset, exc.detail)


def _batched(kind: str, raws: list[bytes], ms: list[int]) -> list[Any]:
    _, batch, as_data = KINDS[kind]
    out = batch(raws, ms)
    assert len(out) == len(raws)
    return [
        (r.reason, r.offset, r.detail) if isinstance(r, FrameError) else as_data(r) for r in out
    ]


def _assert_batch_is_single(kind: str, raws: list[bytes]) -> list[Any]:
    ms = [T0_MS + 250 * k for k in range(len(raws))]
    got = _batched(kind, raws, ms)
    assert got == [_single(kind, raw, m) for raw, m in zip(raws, ms, strict=True)]
    return got


def test_simulated_charger_frames_agree_with_the_structured_decoder() -> None:
    seen = {test_charger_fast.assert_agree(raw) for raw in CHARGER_FRAMES}
    assert "ok" in seen and len(seen) > 1  # the simulator's damaged frames are rejected too
    # The simulator's good real-time frames are the native walk's own (not handed over).
    good = [m.value for m in CHARGER_MESSAGES if m.kind == "realtime"]
    assert good and all(nev_native.decode_charger(raw, None) is not None for raw in good)
    got = _assert_batch_is_single("charger", CHARGER_FRAMES)
    assert any(isinstance(r, tuple) for r in got) and any(isinstance(r, dict) for r in got)


def test_simulated_pack_frames_agree_with_the_structured_decoder() -> None:
    seen = {test_battery_fast.assert_agree(raw) for raw in PACK_FRAMES}
    assert "ok" in seen and len(seen) > 1
    good = [m.value for m in PACK_MESSAGES if m.kind == "realtime"]
    assert good and all(nev_native.decode_pack(raw, None) is not None for raw in good)
    got = _assert_batch_is_single("battery", PACK_FRAMES)
    assert any(isinstance(r, tuple) for r in got) and any(isinstance(r, dict) for r in got)


def test_batch_rows_carry_each_frames_receive_time() -> None:
    ms = [T0_MS, T0_MS + 1, T0_MS + 999]
    rows = decode_charger_rows_batch([REALTIME, REALTIME, REALTIME], ms)
    for r, m in zip(rows, ms, strict=True):
        assert not isinstance(r, FrameError)
        assert r.telemetry[0].received_at == datetime.fromtimestamp(m / 1000, UTC)
        assert r.telemetry[0].received_at.tzinfo is UTC
    packs = decode_pack_rows_batch([REALTIME_2016, SENTINELS_2025], ms[:2])
    for p, m in zip(packs, ms[:2], strict=True):
        assert not isinstance(p, FrameError) and p.telemetry is not None
        assert p.telemetry.received_at == datetime.fromtimestamp(m / 1000, UTC)


def test_batch_takes_bytearrays_and_memoryviews() -> None:
    values: list[Any] = [bytearray(REALTIME), memoryview(LOGIN), b"##garbage"]
    got = _batched("charger", values, [T0_MS] * 3)
    assert got[:2] == [_single("charger", REALTIME, T0_MS), _single("charger", LOGIN, T0_MS)]
    assert got[2][0] == "truncated"
    pack_values: list[Any] = [memoryview(REALTIME_2016), bytearray(SENTINELS_2025)]
    assert _batched("battery", pack_values, [T0_MS] * 2) == [
        _single("battery", REALTIME_2016, T0_MS),
        _single("battery", SENTINELS_2025, T0_MS),
    ]


@pytest.mark.parametrize("batch", [decode_charger_rows_batch, decode_pack_rows_batch])
def test_one_receive_time_per_frame(batch: Batch) -> None:
    with pytest.raises(ValueError, match="received_ms has 1 values for 2 frames"):
        batch([REALTIME, REALTIME], [T0_MS])
    assert batch([], []) == []


_frames = st.sampled_from([*CHARGER_FRAMES[:40], REALTIME, LOGIN])
_packs = st.sampled_from([*PACK_FRAMES[:40], REALTIME_2016, SENTINELS_2025])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_frames, st.sampled_from([0, 24, 24]), st.booleans()), max_size=8), st.data()
)
def test_mutated_charger_batches_match_the_single_path(
    picks: list[tuple[bytes, int, bool]], data: st.DataObject
) -> None:
    raws = [mutate(raw, data, first) if spoil else raw for raw, first, spoil in picks]
    _assert_batch_is_single("charger", raws)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_packs, st.sampled_from([0, 24, 24]), st.booleans()), max_size=8), st.data()
)
def test_mutated_pack_batches_match_the_single_path(
    picks: list[tuple[bytes, int, bool]], data: st.DataObject
) -> None:
    raws = [mutate(raw, data, first) if spoil else raw for raw, first, spoil in picks]
    _assert_batch_is_single("battery", raws)


_HEADS = {
    "charger": b"##\x02\xfeMA01H3BQ2P0000001\x01\x00\x00" + bytes.fromhex("190301100000"),
    "battery": REALTIME_2016[:54],
}


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6), st.sampled_from(["charger", "battery"]))
def test_any_data_unit_gives_rows_or_a_frame_error(units: list[bytes], kind: str) -> None:
    # Valid envelope, identity and time, then any bytes: the native walk runs on all of them.
    # A panic in the native code would surface as PanicException, not FrameError.
    raws = [reseal(_HEADS[kind] + unit + b"\x00") for unit in units]
    got = _assert_batch_is_single(kind, raws)
    assert all(isinstance(r, dict | tuple) for r in got)
