"""The simulated world of three kinds (devtools.sim.world): every record decodes with the real
decoders (bad ones are rejected), identities are valid, the same seed gives the same bytes,
a charging session's energy is the integral of its power and its SOC the vehicle's, and pack
swaps agree between the vehicles' logins and the packs' reports."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tracemalloc
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from itertools import islice, pairwise
from typing import Any

import pytest

from contract.clock import CHINA_TZ
from devtools.sim import plans
from devtools.sim.chargers import MAX_SEQ, TCEC_HEADERS, SeqClock
from devtools.sim.fleet import GOOD_KINDS, FleetOptions, Message
from devtools.sim.world import world_messages
from ingest.decoders.battery import decode_pack_rows
from ingest.decoders.charger import decode_charger_rows
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from ingest.decoders.pack_code import decode_pack_code
from ingest.pipeline import wire
from ingest.pipeline.adapters import decode_tcec_record

pytestmark = pytest.mark.unit

END_MS = 1_782_878_400_000  # 2026-07-01 12:00 +08:00
WORLD = FleetOptions(
    vehicles=60, chargers=12, packs=40, minutes=10, end_ms=END_MS, bad_ratio=0.01, tcec_share=0.4
)


def decode(m: Message) -> Any:
    """The record through the decoder of its topic, as the pipeline would."""
    if m.topic == "vehicle":
        return decode_rows(m.value)
    if m.topic == "charger":
        return decode_charger_rows(m.value)
    if m.topic == "battery":
        return decode_pack_rows(m.value)
    # The pipeline's own reading of the headers (TimeStamp + Seq µs), as a gateway's push.
    return decode_tcec_record(m.value, m.t_ms, m.headers)


@pytest.fixture(scope="module")
def world() -> list[tuple[Message, Any]]:
    out: list[tuple[Message, Any]] = []
    for m in world_messages(WORLD):
        try:
            out.append((m, decode(m)))
        except FrameError as exc:
            assert m.kind not in GOOD_KINDS, (m.kind, m.topic, exc)
            out.append((m, exc))
    return out


def test_every_kind_in_time_order_good_records_decode_bad_ones_are_rejected(
    world: list[tuple[Message, Any]],
) -> None:
    times = [m.t_ms for m, _ in world]
    assert times == sorted(times) and times[-1] < END_MS
    topics = Counter(m.topic for m, _ in world)
    assert set(topics) == {"vehicle", "charger", "tcec", "battery"}
    bad = [(m, r) for m, r in world if m.kind not in GOOD_KINDS]
    assert bad and all(isinstance(r, FrameError) for _, r in bad)
    assert {m.topic for m, _ in bad} >= {"vehicle", "battery"}
    # keys are the device identities of docs/kafka.md
    for m, rows in world:
        if isinstance(rows, FrameError):
            continue
        key = m.key.decode()
        if m.topic == "vehicle":
            assert key == rows.vin
        elif m.topic == "charger":
            assert key == rows.charger_id and key.startswith(rows.operator_id)
        elif m.topic == "battery":
            assert key == rows.pack_code
        else:
            op = dict(m.headers)["tcec_operator_id"].decode()
            assert [h for h, _ in m.headers] == list(TCEC_HEADERS)
            connectors = {r.connector_id for r in (*rows.statuses, *rows.sessions)}
            assert key == op if rows.connectors else key == f"{op}:{connectors.pop()}"


def test_identities_are_valid(world: list[tuple[Message, Any]]) -> None:
    codes: set[str] = set()
    operators: set[str] = set()
    for m, rows in world:
        if isinstance(rows, FrameError):
            continue
        if m.topic == "vehicle" and rows.session is not None and rows.session.event == "login":
            codes.update(rows.session.pack_codes)
        elif m.topic == "battery":
            codes.add(rows.pack_code)
        elif m.topic in ("charger", "tcec"):
            operators.add(rows.operator_id)
            for s in rows.sessions:
                assert len(s.start_charge_seq) == 27 and s.start_charge_seq[:9] == s.operator_id
            for c in (*rows.statuses, *rows.telemetry, *rows.connectors):
                assert 0 < len(c.connector_id) <= 26
    assert len(codes) > WORLD.vehicles  # the vehicles' packs and the standalone ones
    for code in codes:
        decode_pack_code(code)  # raises PackCodeError for a code GB/T 34014 does not allow
    assert operators and all(len(op) == 9 and op.isalnum() and op.isupper() for op in operators)


def test_pushes_carry_the_seq_an_operator_sends_and_are_stored_by_it(
    world: list[tuple[Message, Any]],
) -> None:
    # As behind the gateway (tcec_seq = the envelope's Seq): per operator and TimeStamp
    # second 0001, 0002, ... in send order, so no (TimeStamp, Seq) pair repeats (the gateway
    # would refuse it), and a status push's rows are at TimeStamp + Seq µs.
    seqs: dict[tuple[str, str], list[str]] = defaultdict(list)
    stored = 0
    for m, rows in world:
        if m.topic != "tcec":
            continue
        h = {k: v.decode() for k, v in m.headers}
        assert [k for k, _ in m.headers] == [*wire.TCEC_HEADERS, wire.TCEC_SEQ]
        seqs[(h["tcec_operator_id"], h["tcec_timestamp"])].append(h["tcec_seq"])
        if isinstance(rows, FrameError) or not rows.statuses or rows.telemetry:
            continue  # a charge-status push's rows are at its own EndTime
        at = datetime.strptime(h["tcec_timestamp"], "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
        assert {s.ts for s in rows.statuses} == {at + timedelta(microseconds=int(h["tcec_seq"]))}
        stored += 1
    assert stored and max(map(len, seqs.values())) >= 3  # station info and both guns at once
    for numbers in seqs.values():
        assert numbers == [f"{i:04d}" for i in range(1, len(numbers) + 1)]


def test_an_operator_out_of_seq_in_a_second_sends_in_the_next() -> None:
    clock = SeqClock()
    second = END_MS // 1000 - 10
    got = [clock.next(b"A", second * 1000 + 10) for _ in range(MAX_SEQ + 1)]
    assert got[0] == (second, 1) and got[MAX_SEQ - 1] == (second, MAX_SEQ)
    assert got[MAX_SEQ] == (second + 1, 1)  # never a wrap to 0000 within the second
    assert clock.next(b"A", (second + 1) * 1000) == (second + 1, 2)  # that second goes on
    assert clock.next(b"B", second * 1000) == (second, 1)  # each operator has its own
    assert clock.next(b"A", (second + 2) * 1000) == (second + 2, 1)  # a new second: 0001


def test_same_seed_same_bytes_another_seed_other_bytes() -> None:
    small = FleetOptions(vehicles=8, chargers=3, packs=6, minutes=3, end_ms=END_MS)
    first = list(world_messages(small))
    assert first == list(world_messages(small))
    other = list(world_messages(dataclasses.replace(small, seed=2)))
    assert first != other


_DIGEST = """
import hashlib
from devtools.sim.fleet import FleetOptions
from devtools.sim.world import world_messages
digest = hashlib.sha256()
options = FleetOptions(vehicles=10, chargers=4, packs=8, minutes=3, end_ms=1_780_000_000_000)
for m in world_messages(options):
    digest.update(m.key + m.value + repr(m.headers).encode())
print(digest.hexdigest())
"""


def test_the_world_is_the_same_bytes_in_every_process() -> None:
    digests = {
        subprocess.run(
            [sys.executable, "-c", _DIGEST],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1, digests


def _trapezoid(samples: list[tuple[datetime, float]]) -> float:
    samples.sort()
    return sum(
        (b[0] - a[0]).total_seconds() / 3600 * (a[1] + b[1]) / 2 for a, b in pairwise(samples)
    )


def test_session_energy_is_the_integral_of_the_power_and_the_soc_the_vehicles(
    world: list[tuple[Message, Any]],
) -> None:
    power: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    final: dict[tuple[str, str], float] = {}
    charger_soc: dict[tuple[str, datetime], float] = {}
    ended: set[str] = set()
    statuses: dict[tuple[str, str], list[tuple[datetime, int]]] = defaultdict(list)
    for m, rows in world:
        if isinstance(rows, FrameError) or m.topic not in ("charger", "tcec"):
            continue
        for s in rows.statuses:
            statuses[(s.operator_id, s.connector_id)].append((s.ts, s.status))
        for r in rows.telemetry:
            key = (r.operator_id, r.connector_id)
            # The profile reports power; a T/CEC push voltage and current (phase A / DC).
            kw = r.power_kw if r.power_kw is not None else r.voltage_v * r.current_a / 1000
            power[key].append((r.ts, kw))
            final[key] = max(final.get(key, 0.0), r.energy_kwh)
            if r.vin is not None:
                charger_soc[(r.vin, r.ts)] = r.soc_pct
        ended.update(
            s.start_charge_seq for s in rows.sessions if s.state == 4 or s.event == "order"
        )
    sessions = [k for k, e in final.items() if e > 0]
    assert len(sessions) >= 5 and len(ended) == len(sessions)
    for key in sessions:
        integral = _trapezoid(power[key])
        assert integral == pytest.approx(final[key], rel=0.01), key
        states = [s for _, s in sorted(statuses[key])]
        compact = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
        assert compact == [1, 2, 3, 2, 1], (key, compact)
    # The vehicle at the connector reports the SOC the charger reports (same plan, own clock).
    vehicle_soc: dict[str, list[tuple[datetime, int, int]]] = defaultdict(list)
    for m, rows in world:
        if m.topic == "vehicle" and not isinstance(rows, FrameError) and rows.vehicle:
            v = rows.vehicle
            vehicle_soc[rows.vin].append((v.ts, v.soc_pct, v.charging_state))
    checked = 0
    for (vin, ts), soc in charger_soc.items():
        near = [(abs((t - ts).total_seconds()), s, c) for t, s, c in vehicle_soc[vin]]
        gap, vsoc, _ = min(near)
        if gap <= 10:
            assert abs(vsoc - soc) <= 2, (vin, ts)
            checked += 1
    assert checked > 20
    assert any(c == 1 for vin in {v for v, _ in charger_soc} for _, _, c in vehicle_soc[vin])


def test_swaps_agree_between_vehicle_logins_and_pack_reports(
    world: list[tuple[Message, Any]],
) -> None:
    places: dict[str, list[tuple[int, str]]] = defaultdict(list)
    logouts: dict[str, list[int]] = defaultdict(list)
    for m, rows in world:
        if isinstance(rows, FrameError):
            continue
        if m.topic == "vehicle" and rows.session is not None:
            if rows.session.event == "login":
                for code in rows.session.pack_codes:
                    places[code].append((rows.ts_ms, rows.vin))
            else:
                logouts[rows.vin].append(rows.ts_ms)
        elif m.topic == "battery" and rows.telemetry is not None:
            assert rows.telemetry.lifecycle_stage in (2, 3, 4, 5)
            places[rows.pack_code].append((rows.ts_ms, rows.telemetry.site_id))
    swaps = [plans.swap_plan(WORLD, m) for m in range(plans.swap_count(WORLD))]
    assert len(swaps) == 4
    for s in swaps:
        (logout,) = logouts[s.vin]
        # the vehicle's own pack: in the vehicle, then in the station after the logout
        old = sorted(places[s.old_code])
        assert {p for t, p in old if t < logout} == {s.vin}
        assert {p for t, p in old if t > logout} == {s.station}
        # the station's pack: in the station until the vehicle logs in with it
        new = sorted(places[s.new_code])
        login = min(t for t, p in new if p == s.vin)
        assert {p for t, p in new if t < login} == {s.station}
        assert {p for t, p in new if t >= login} == {s.vin}
        assert logout < login


def test_a_million_piles_and_packs_start_without_a_million_objects() -> None:
    huge = FleetOptions(vehicles=10, chargers=1_000_000, packs=1_000_000, end_ms=END_MS)
    tracemalloc.start()
    try:
        first = list(islice(world_messages(huge), 3000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert {m.topic for m in first} >= {"charger", "battery"}
    assert peak < 20 * 2**20, peak  # a few MB: nothing per pile or pack up front
