"""Traffic of millions of devices with bounded memory: ``scale_messages(ScaleOptions(...))``.

Device slot ``d`` of ``devices`` is a vehicle, a charging pile or a standalone pack by the mix
(``vehicle=1,charger=1,battery=1``: slots cycle through the kinds by weight). Every device
reports once per ``interval_s``, phases spread evenly over the period, so the stream is in time
order without a sort: round ``r``, slot ``d`` reports at ``start + r x period + d x period /
devices``. Everything a record holds is a function of (seed, kind, index, time):

- identities (``identities``): VINs with their check digit, GB/T 34014 pack codes, piles with
  connector ids ``operator_id:connector_id``;
- vehicles (``cycle``): drive/park/charge cycles with an SOC that agrees with the energy, a
  normal cell spread (one of ``_PATTERNS`` cell-offset patterns, scaled per vehicle), rare
  faults whose alarm escalates to level 3 (then 1 Hz frames, GB/T 32960.3 Annex B), network
  gaps after which the vehicle logs in again and sends the held frames at once as reissue
  (0x03);
- piles: a charging session in some two-hour windows (``ChargePlan``: power, energy, the
  connected VIN and its SOC), reported in the charger profile (``chargers``);
- packs: the standalone packs of ``packs`` (swap stations, storage, second life, recycling).

Each device logs in at round 0. ``share_2025`` of the vehicles and packs speak the 2025
edition; ``bad_ratio`` of the frames are corrupted (dead letters). Nothing is kept between
records: the memory is the same for ten thousand devices or three million.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import count
from typing import Final

from devtools.sim import identities, plans
from devtools.sim.chargers import Gun, connector_status, pile_frame, pile_login
from devtools.sim.cycle import VehicleCycle, fault_at
from devtools.sim.fleet import CELLS, PROBES, Message, SimVehicle, corrupt
from devtools.sim.options import FleetOptions
from devtools.sim.packs import PackSpot, pack_frame, session_frame
from ingest.decoders import Alarm, encode_frame
from ingest.decoders.battery import encode_pack_frame

__all__ = ["KINDS", "ScaleOptions", "kind_counts", "parse_mix", "scale_messages", "slot_kind"]

KINDS: Final = ("vehicle", "charger", "battery")
DEFAULT_MIX: Final = (("vehicle", 1), ("charger", 1), ("battery", 1))
# Cell and probe offset patterns shared by all vehicles (each scales its own spread): a normal
# spread without one list of 96 floats per vehicle.
_PATTERNS: Final = 64
SESSION_WINDOW_MS: Final = 2 * 3_600_000  # a pile has at most one session per window
GAP_WINDOW_TICKS: Final = 360  # one hour at 10 s: ``reissue_share`` is per device and window


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    devices: int = 3000
    mix: tuple[tuple[str, int], ...] = DEFAULT_MIX
    interval_s: float = 10.0
    share_2025: float = 0.4
    bad_ratio: float = 0.001
    reissue_share: float = 0.01  # share of (vehicle, gap window) with a network gap (``_gap``)
    reissue_ticks: int = 6  # frames a gap holds back, sent as reissue when it ends
    fault_per_hour: float = 0.001  # share of vehicle-hours with an escalating fault
    seed: int = 1
    start_ms: int = 1_782_878_400_000  # simulated time of round 0 (loadgen: now)
    first_round: int = 0  # rounds before it are not sent (> 0: no logins; steady state)
    # (K, M): only device slots d with d % M == K (one of M processes sharing a fleet, each
    # under its own descriptor limit: loadgen --via-gateway --device-share K/M).
    share: tuple[int, int] = (0, 1)


def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
    """``vehicle=2,charger=1`` -> ((vehicle, 2), (charger, 1)); ValueError names the fix."""
    out: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in KINDS or name in dict(out):
            raise ValueError(f"{part!r}: a mix is kind=weight, kinds {', '.join(KINDS)} once each")
        if not weight.isdigit() or not 0 <= int(weight) <= 1000:
            raise ValueError(f"{part!r}: a weight is a whole number 0..1000")
        out.append((name, int(weight)))
    if not sum(w for _, w in out):
        raise ValueError(f"{text!r}: the mix needs one kind of weight > 0, e.g. vehicle=1")
    return tuple((n, w) for n, w in out if w)


def slot_kind(o: ScaleOptions, d: int) -> tuple[str, int]:
    """The kind of device slot ``d`` and its index among that kind."""
    total = sum(w for _, w in o.mix)
    block, pos = divmod(d, total)
    for name, w in o.mix:
        if pos < w:
            return name, block * w + pos
        pos -= w
    raise AssertionError("unreachable: pos < total")


def kind_counts(o: ScaleOptions) -> dict[str, int]:
    """How many devices of each kind ``devices`` slots hold."""
    total = sum(w for _, w in o.mix)
    full, rest = divmod(o.devices, total)
    out = {}
    for name, w in o.mix:
        out[name] = full * w + min(w, rest)
        rest = max(0, rest - w)
    return out


class _Run:
    """What is fixed for a run (never per device): periods, counts, the fleet options the
    charger and pack simulators take, the cell patterns."""

    def __init__(self, o: ScaleOptions) -> None:
        self.o = o
        self.period = int(o.interval_s * 1000)
        self.counts = kind_counts(o)
        self.fleet = FleetOptions(
            vehicles=0,
            chargers=max(1, self.counts.get("charger", 0)),
            packs=max(1, self.counts.get("battery", 0)),
            interval_s=o.interval_s,
            share_2025=o.share_2025,
            bad_ratio=o.bad_ratio,
            runaway=False,
            seed=o.seed,
            minutes=60.0,
            end_ms=o.start_ms + 3_600_000,  # so that ``plans.start_ms`` is round 0
            vin_prefix=f"S{o.seed}",
        )
        self.tag = plans.tag_of(self.fleet.vin_prefix)
        rng = random.Random(o.seed)  # simulated data, not secrets
        # Half-normal: most cells near the top, a few weak ones lower (x the vehicle's spread).
        self.cells = [
            [min(1.0, abs(rng.gauss(0.0, 1.0)) / 3) for _ in range(CELLS)] for _ in range(_PATTERNS)
        ]
        self.probes = [[rng.randint(0, 3) for _ in range(PROBES)] for _ in range(_PATTERNS)]

    def bad(self, msg: Message, *parts: int) -> Message:
        """``msg`` corrupted with probability ``bad_ratio`` (by seed and ``parts``)."""
        o = self.o
        if plans.unit(o.seed, 90, *parts) >= o.bad_ratio:
            return msg
        raw, kind = corrupt(msg.value, random.Random(int(plans.unit(o.seed, 91, *parts) * 2**53)))
        return msg._replace(value=raw, kind=kind)


def scale_messages(o: ScaleOptions) -> Iterator[Message]:
    """Every device's records, round after round, in time order; endless (the caller stops)."""
    run = _Run(o)
    for r in count(o.first_round):
        base = o.start_ms + r * run.period
        for d in range(o.share[0], o.devices, o.share[1]):
            t = base + d * run.period // o.devices
            kind, i = slot_kind(o, d)
            if kind == "vehicle":
                yield from _vehicle_tick(run, i, r, t)
            elif kind == "charger":
                yield from _charger_tick(run, i, r, t)
            else:
                yield from _pack_tick(run, i, r, t)


# --- vehicles ---------------------------------------------------------------------------------


# Bounded: the last VINs only, which a vehicle's 1 Hz burst, its reissue and a pile's
# connected vehicle reuse; memory stays independent of the device count.
@functools.lru_cache(maxsize=256)
def _vin(seed: int, i: int) -> str:
    return identities.vin(seed, i)


def _edition(o: ScaleOptions, kind: int, i: int) -> int:
    return 2025 if plans.unit(o.seed, 3, kind, i) < o.share_2025 else 2016


def vehicle_frame(run: _Run, i: int, t: int, command: int = 0x02) -> tuple[bytes, int]:
    """Vehicle ``i``'s real-time (or reissue) frame at ``t`` and its alarm level."""
    o = run.o
    cyc = VehicleCycle(o.seed, i)
    s = cyc.state(t)
    fault = fault_at(o.seed, i, t, o.fault_per_hour)
    v = SimVehicle.__new__(SimVehicle)  # its frame() encoder, fed from the closed form
    v.vin, v.edition = _vin(o.seed, i), _edition(o, 0, i)
    v.soc, v.current, v.speed, v.mode = s.soc, s.current_a, s.speed_kmh, s.mode
    v.odo, v.lon, v.lat, v.ambient = s.odometer_km, s.lon, s.lat, s.ambient_c
    v.temp = max(s.temp_c, fault.temp_c) if fault else s.temp_c
    v.fast_charge = s.fast_charge
    pattern = int(plans.unit(o.seed, 60, i) * _PATTERNS)
    v.cell_spread = 0.006 + 0.024 * plans.unit(o.seed, 61, i)
    v.cell_offsets, v.probe_offsets = run.cells[pattern], run.probes[pattern]
    v.insulation = (3000, 8000, 20000, 50000)[int(plans.unit(o.seed, 62, i) * 4)]
    v.heating_from = v.collapse_at = None
    frame = v.frame(t, command)
    level = 0
    if fault is not None:
        level = fault.level
        alarm = Alarm(
            max_level=level,
            general_flags=fault.flags,
            bit_levels=None if v.edition == 2016 else (),
        )
        blocks = tuple(alarm if isinstance(b, Alarm) else b for b in frame.blocks)
        frame = replace(frame, blocks=blocks)
    return encode_frame(frame), level


def _gap(o: ScaleOptions, i: int, r: int) -> tuple[int, int] | None:
    """The rounds [first, end) of vehicle ``i``'s network gap in the window holding round
    ``r``, if it has one. Windows are ``max(GAP_WINDOW_TICKS, 2 x reissue_ticks)`` rounds,
    each vehicle's shifted by a phase of its own, so gaps end all through a run and a gap may
    have begun before the run started (a week's backlog arrives within a short run)."""
    if o.reissue_share <= 0:
        return None
    size = max(GAP_WINDOW_TICKS, 2 * o.reissue_ticks)
    phase = int(plans.unit(o.seed, 82, i) * size)
    w = (r + phase) // size
    if plans.unit(o.seed, 80, i, w) >= o.reissue_share:
        return None
    # The gap ends inside its window (off + ticks < size), so its end round finds it too.
    first = w * size - phase + int(plans.unit(o.seed, 81, i, w) * (size - o.reissue_ticks))
    return first, first + o.reissue_ticks


def _vehicle_tick(run: _Run, i: int, r: int, t: int) -> Iterator[Message]:
    o = run.o
    key = _vin(o.seed, i).encode()
    gap = _gap(o, i, r)
    if gap is not None and gap[0] <= r < gap[1]:
        return  # offline: the terminal stores the frame
    back_online = gap is not None and r == gap[1]
    if r == 0 or back_online:  # a terminal logs in again after every reconnection
        v = SimVehicle.__new__(SimVehicle)
        v.vin, v.edition = key.decode(), _edition(o, 0, i)
        yield Message(t, key, encode_frame(v.login(t, 1 + (i + r) % 65000)), "login")
    if gap is not None and back_online:  # then the backlog, as reissue
        for back in range(gap[0], gap[1]):
            then = t - (r - back) * run.period
            yield Message(t, key, vehicle_frame(run, i, then, 0x03)[0], "reissue")
    raw, level = vehicle_frame(run, i, t)
    yield run.bad(Message(t, key, raw, "realtime"), 0, i, r)
    # Level 3: 1 Hz until the next period's report (GB/T 32960.3 Annex B).
    k = 1
    while level >= 3 and k * 1000 < run.period:
        raw, level = vehicle_frame(run, i, t + k * 1000)
        if level >= 3:
            yield Message(t + k * 1000, key, raw, "realtime")
        k += 1


# --- charging piles ---------------------------------------------------------------------------


def session_plan(run: _Run, k: int, t: int) -> plans.ChargePlan | None:
    """Connector ``k``'s session in the window holding ``t``, if it has one: starts, knee and
    end on the pile's reporting ticks, so the energy is the integral of the reported power."""
    o, f = run.o, run.fleet
    w = t // SESSION_WINDOW_MS
    if plans.unit(o.seed, 100, k, w) >= 0.5:
        return None
    pile, gun = divmod(k, plans.CONNECTORS_PER_PILE)
    p = run.period
    phase = t % p
    w0 = w * SESSION_WINDOW_MS
    slots = SESSION_WINDOW_MS // p
    length = int((1200 + 3600 * plans.unit(o.seed, 101, k, w)) * 1000) // p  # 20-80 minutes
    first = 1 + int(plans.unit(o.seed, 102, k, w) * (slots - length - 4))

    def tick(n: int) -> int:
        return w0 + (phase - w0) % p + n * p

    dc = plans.unit(o.seed, 14, pile) < 0.7  # the pile's type, as its login says
    soc0 = 15.0 + 45.0 * plans.unit(o.seed, 103, k, w)
    hours = length * o.interval_s / 3600
    rated = 60.0 + 60.0 * plans.unit(o.seed, 16, pile) if dc else 7.0
    p0 = min(rated, (95.0 - soc0) / 100 * plans.CAPACITY_KWH / (0.85 * hours))
    vehicles = run.counts.get("vehicle", 0)
    vehicle = (k * 7919 + w) % vehicles if vehicles else k % identities.MAX_DEVICES
    op = plans.operator_of(pile, f.chargers, run.tag)
    return plans.ChargePlan(
        connector=k,
        vin=_vin(o.seed, vehicle),
        vehicle=vehicle,
        start_ms=tick(first),
        knee_ms=tick(first + max(1, int(length * 0.7))),
        end_ms=tick(first + length),
        p0_kw=round(p0, 1),
        dc=dc,
        soc0=soc0,
        seq=f"{op}{pile:08d}{gun + 1:02d}{w % 10**8:08d}",
    )


def _charger_tick(run: _Run, pile: int, r: int, t: int) -> Iterator[Message]:
    f = run.fleet
    cid = identities.charger_id(run.o.seed, pile, f.chargers)
    key = cid.encode()
    if r == 0:
        yield Message(t, key, pile_login(f, pile, t, run.tag, cid), "login", "charger")
    guns = []
    for gun in range(plans.CONNECTORS_PER_PILE):
        g = Gun.__new__(Gun)
        g.o, g.k = f, plans.CONNECTORS_PER_PILE * pile + gun
        g.cid = plans.connector_id_of(pile, gun, f.chargers, run.tag)
        g.plan = session_plan(run, g.k, t)
        g.status = connector_status(f, g.plan, g.k, t)
        guns.append(g)
    msg = Message(t, key, pile_frame(guns, t, cid), "realtime", "charger")
    yield run.bad(msg, 1, pile, r)


# --- standalone packs -------------------------------------------------------------------------


def _pack_tick(run: _Run, e: int, r: int, t: int) -> Iterator[Message]:
    f = run.fleet
    spot = PackSpot(f, e)
    key = spot.code.encode()
    edition = _edition(run.o, 2, e)
    if r == 0:
        login = encode_pack_frame(session_frame(f, spot, t, edition, login=True))
        yield Message(t, key, login, "login", "battery")
    raw = encode_pack_frame(pack_frame(f, spot, t, edition))
    yield run.bad(Message(t, key, raw, "realtime", "battery"), 2, e, r)
