"""The load generator at scale (``devtools.sim.scale``): valid distinct identities, physically
consistent vehicles, faults that escalate, reissue after gaps, bad frames, and memory that does
not grow with the device count."""

from __future__ import annotations

import itertools
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from devtools.sim import identities
from devtools.sim.cycle import VehicleCycle, pack_voltage
from devtools.sim.fleet import GOOD_KINDS, Message
from devtools.sim.plans import CAPACITY_KWH
from devtools.sim.scale import ScaleOptions, kind_counts, parse_mix, scale_messages, slot_kind
from ingest.decoders.battery import decode_pack_rows
from ingest.decoders.charger import decode_charger_rows
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from ingest.decoders.identity import check_identity
from ingest.decoders.pack_code import check_pack_code

pytestmark = pytest.mark.unit

START = 1_782_878_400_000  # 2026-07-01 12:00 +08:00
DECODE: dict[str, Callable[[bytes], Any]] = {
    "vehicle": decode_rows,
    "charger": decode_charger_rows,
    "battery": decode_pack_rows,
}


def _take(o: ScaleOptions, n: int) -> list[Message]:
    return list(itertools.islice(scale_messages(o), n))


def test_vin_check_digit_is_iso_3779() -> None:
    # The worked example of ISO 3779 / GB 16735 (check digit X), and an all-ones VIN (1).
    assert identities.vin_check_digit("1M8GDM9A_KP042788".replace("_", "0")) == "X"
    assert identities.vin_check_digit("11111111111111111") == "1"


@pytest.mark.parametrize("i", [0, 1, 999_999, 1_000_000, 2_999_999, identities.MAX_DEVICES - 1])
def test_vins_are_valid_at_any_index(i: int) -> None:
    v = identities.vin(7, i)
    assert len(v) == 17 and set(v) <= set(identities.VIN_ALPHABET)
    assert v[8] == identities.vin_check_digit(v)
    assert check_identity(v.encode(), vin=True) == v  # the decoder's VIN rule accepts it


def test_identities_are_distinct_per_index_and_per_seed() -> None:
    n = 100_000
    vins = {identities.vin(3, i) for i in range(0, 3_000_000, 3_000_000 // n)}
    assert len(vins) == n
    assert identities.vin(3, 5) != identities.vin(4, 5)
    codes = {identities.pack_code(3, k) for k in range(0, 3_000_000, 300)}
    assert len(codes) == 10_000 and all(check_pack_code(c) is None for c in codes)
    chargers = [identities.charger_entity_ids(3, p, 1_000_000) for p in range(0, 1_000_000, 100)]
    assert len({cid for pile in chargers for cid in pile}) == 2 * len(chargers)


def test_mix_splits_slots_by_weight() -> None:
    o = ScaleOptions(devices=10, mix=parse_mix("vehicle=2,charger=1,battery=0"))
    assert [slot_kind(o, d)[0] for d in range(6)] == ["vehicle", "vehicle", "charger"] * 2
    assert kind_counts(o) == {"vehicle": 7, "charger": 3}
    assert {slot_kind(o, d) for d in range(10)} >= {("vehicle", 6), ("charger", 2)}
    for bad in ("truck=1", "vehicle=x", "vehicle=0", "vehicle=1,vehicle=2"):
        with pytest.raises(ValueError, match=r"mix|weight"):
            parse_mix(bad)


def test_stream_is_real_frames_in_time_order_with_logins_bad_frames_and_both_editions() -> None:
    o = ScaleOptions(devices=900, bad_ratio=0.02, start_ms=START)
    messages = _take(o, 900 * 4)
    assert [m.t_ms for m in messages] == sorted(m.t_ms for m in messages)
    kinds = Counter((m.topic, m.kind) for m in messages)
    assert {kinds[(topic, "login")] for topic in DECODE} == {300}
    editions: Counter[int] = Counter()
    keys: dict[str, set[bytes]] = defaultdict(set)
    rejected = 0
    for m in messages:
        try:
            rows = DECODE[m.topic](m.value)
        except FrameError:
            assert m.kind not in GOOD_KINDS
            rejected += 1
            continue
        assert m.kind in GOOD_KINDS
        keys[m.topic].add(m.key)
        ident = {"vehicle": "vin", "charger": "charger_id", "battery": "pack_code"}[m.topic]
        assert getattr(rows, ident) == m.key.decode()
        if m.topic != "charger":
            editions[rows.edition] += 1
    assert rejected == sum(n for (_, k), n in kinds.items() if k not in GOOD_KINDS) > 0
    assert {len(v) for v in keys.values()} == {300}
    assert set(editions) == {2016, 2025}


def test_soc_agrees_with_the_energy_of_the_reported_current() -> None:
    for i in range(20):
        cyc = VehicleCycle(1, i)
        t0 = START
        step = 2000  # ms
        first = cyc.state(t0)
        kwh = 0.0  # discharged: integral of V x I
        socs = [first.soc]
        for n in range(int(cyc.cycle_s * 1000 / step)):
            s = cyc.state(t0 + n * step)
            kwh += pack_voltage(s.soc) * s.current_a * step / 3.6e9
            socs.append(s.soc)
        last = cyc.state(t0 + int(cyc.cycle_s * 1000))
        assert last.soc == pytest.approx(first.soc, abs=0.01)  # energy-neutral cycle
        parked_kwh = 0.4 * pack_voltage(first.soc) * cyc.cycle_s / 3.6e6  # the BMS draw
        assert kwh == pytest.approx(parked_kwh, abs=0.01 * CAPACITY_KWH)
        assert min(socs) >= 10.0 and max(socs) <= 100.0


def test_vehicles_drive_park_and_charge_with_a_rising_odometer() -> None:
    o = ScaleOptions(devices=600, mix=(("vehicle", 1),), bad_ratio=0, reissue_share=0)
    rows = [decode_rows(m.value).vehicle for m in _take(o, 600 * 6) if m.kind == "realtime"]
    modes = Counter((r.charging_state, (r.speed_kmh or 0) > 0) for r in rows if r is not None)
    assert modes[(1, False)] and modes[(3, True)] and modes[(3, False)]  # charge, drive, park
    odo: dict[str, float] = {}
    for r in rows:
        assert r is not None and r.odometer_km is not None
        assert 0 < r.odometer_km < 400_000
        assert r.odometer_km >= odo.get(r.vin, 0.0)
        odo[r.vin] = r.odometer_km
        assert r.max_cell_voltage_v is not None and r.min_cell_voltage_v is not None
        assert 0.0 < r.max_cell_voltage_v - r.min_cell_voltage_v <= 0.03


def test_a_fault_escalates_to_level_3_and_reports_at_1_hz() -> None:
    o = ScaleOptions(
        devices=2, mix=(("vehicle", 1),), fault_per_hour=1.0, bad_ratio=0, reissue_share=0
    )
    seen: list[tuple[int, int]] = []  # (ts_ms, level) of vehicle 0
    for m in _take(o, 2 * 400 + 400):
        rows = decode_rows(m.value)
        if m.kind == "realtime" and rows.vin == identities.vin(o.seed, 0):
            assert rows.ts_ms is not None and rows.vehicle is not None
            seen.append((rows.ts_ms, rows.vehicle.max_alarm_level or 0))
    levels = [lvl for _, lvl in seen]
    first = {lvl: levels.index(lvl) for lvl in (1, 2, 3)}
    assert first[1] < first[2] < first[3]  # escalates in order
    at3 = [ts for ts, lvl in seen if lvl == 3]
    gaps = [b - a for a, b in itertools.pairwise(at3)]
    episode = gaps[: gaps.index(max(gaps))] if max(gaps) > 1000 else gaps  # the first fault's
    assert len(episode) >= 100 and set(episode) == {1000}  # 120 s of level 3, one a second
    after = levels[levels.index(3) + len(episode) + 1 :]
    assert after and after[0] == 0  # then it clears


def test_a_gap_is_sent_as_reissue_after_a_login_when_it_ends_and_nothing_twice() -> None:
    o = ScaleOptions(
        devices=20, mix=(("vehicle", 1),), reissue_share=1.0, reissue_ticks=5, bad_ratio=0
    )
    rounds = 760  # holds a whole gap window (360 reports) of every vehicle, whatever its phase
    by_vin: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for m in _take(o, 20 * rounds):
        rows = decode_rows(m.value)
        if m.kind == "login":
            by_vin[rows.vin].append((0, "login"))
            continue
        assert rows.ts_ms is not None
        assert rows.command == (3 if m.kind == "reissue" else 2)
        by_vin[rows.vin].append((rows.ts_ms, m.kind))
    assert len(by_vin) == 20
    period = 10_000
    for frames in by_vin.values():
        times = [t for t, k in frames if k != "login"]
        assert len(times) == len(set(times))  # no frame twice
        assert all((b - a) % period == 0 for a, b in itertools.pairwise(sorted(times)))
        reissued = [t for t, k in frames if k == "reissue"]
        assert reissued and len(reissued) % 5 == 0  # whole gaps, each reissued at once
        # Every hole in the live reports is reissued (a gap may also have begun before the run).
        live = sorted(t for t, k in frames if k == "realtime")
        hole = {*range(live[0], live[-1] + 1, period)} - set(live)
        assert hole and hole <= set(reissued)
        # Each reissue follows a login: the terminal logs in again when it reconnects.
        kinds = [k for _, k in frames]
        for j, k in enumerate(kinds):
            if k == "reissue" and kinds[j - 1] != "reissue":
                assert kinds[j - 1] == "login"


def test_piles_report_sessions_whose_energy_grows_with_the_power() -> None:
    o = ScaleOptions(devices=200, mix=(("charger", 1),), bad_ratio=0)
    energy: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for m in _take(o, 200 * 400):
        if m.kind != "realtime":
            continue
        rows = decode_charger_rows(m.value)
        for tel in rows.telemetry:
            if tel.energy_kwh is not None and tel.power_kw is not None:
                energy[tel.connector_id].append(
                    (int(tel.ts.timestamp()), tel.power_kw, tel.energy_kwh)
                )
    assert len(energy) > 20  # sessions on many connectors
    for samples in energy.values():
        for (t0, p0, e0), (t1, p1, e1) in itertools.pairwise(samples):
            if e1 >= e0:  # within one session: trapezoid of the reported power
                assert e1 - e0 == pytest.approx((p0 + p1) / 2 * (t1 - t0) / 3600, abs=0.02)


def _peak(devices: int, frames: int) -> int:
    """tracemalloc's peak while generating ``frames`` records of ``devices`` (steady state)."""
    o = ScaleOptions(
        devices=devices, bad_ratio=0.01, reissue_share=0.05, fault_per_hour=0.05, first_round=1
    )
    tracemalloc.start()
    try:
        for _ in itertools.islice(scale_messages(o), frames):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_generator_memory_does_not_grow_with_the_device_count() -> None:
    # 4,000 records: a thousand devices report four times, a million devices are all new; a
    # generator that kept anything per device would hold 4x more for the million. (Few
    # records: tracemalloc makes the generator ~13x slower.)
    small = _peak(1_000, 4_000)
    large = _peak(1_000_000, 4_000)
    assert large < 1.2 * small + 64 * 1024, (small, large)
    assert large < 4 * 1024 * 1024  # and it is small: the cell patterns and a few caches
