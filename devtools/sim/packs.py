"""Simulated standalone battery packs on ``nev.battery.raw`` (docs/protocols/battery.md).

``--packs N`` packs report every ``interval_s`` (key = the 24-character GB/T 34014 code):
pack state (lifecycle stage, SOC, SOH, cycles, voltage, current, insulation), the site they
are at, 96 cell voltages, 32 probe temperatures and the alarm block; each logs in first.
Where they are, by index: the first packs are in swap stations (the ones the swaps take),
the others in a swap station (charging to 95 % then idle), a warehouse, a second-life
energy-storage site (cycling) or a recycler.

With incidents (``runaway``), pack ``plans.hot_pack`` in a swap station gets a cell with an
internal short (its voltage sags, the probe next to it heats past 60 °C).

Swaps (``plans.swap_plan``): station pack ``m`` stops reporting from the station when the
swap's vehicle arrives (a logout), and the pack the vehicle came with -- its login code --
starts reporting from the same station and slot (a login, then data), charging from the SOC
the vehicle arrived with; the vehicle logs in with pack ``m`` (``devtools.sim.fleet``).

Pure and deterministic for a seed; a pack's state is a function of (options, pack, time).
``bad_ratio`` of the frames are corrupted (dead letters).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any, Final

from devtools.sim import plans
from devtools.sim.envelope import china_time
from devtools.sim.fleet import FleetOptions, Message, corrupt
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackFrame,
    PackLogin,
    PackLogout,
    PackProbes,
    PackState,
    Site,
    encode_pack_frame,
)

__all__ = ["PackSpot", "pack_frame", "pack_messages", "session_frame"]

CELLS: Final = 96
PROBES: Final = 32
IN_STATION, IN_STORAGE, SECOND_LIFE, RECYCLED = 2, 3, 4, 5
CHARGE_PCT_PER_S: Final = 0.05  # a station charger: ~25 minutes from 20 to 95 %


class PackSpot:
    """Where pack entity ``e`` is and what it is, from the options alone. Entities
    ``0..packs-1`` are the standalone packs; ``packs + m`` is the pack swap ``m`` leaves."""

    __slots__ = ("code", "from_ms", "k", "site", "slot", "soc0", "stage", "swap", "until_ms")

    def __init__(self, o: FleetOptions, e: int) -> None:
        self.k = e
        self.from_ms: int | None = None  # reports from (the swapped-out pack)
        self.until_ms: int | None = None  # reports until (a pack a swap takes away)
        self.swap: plans.SwapPlan | None = None
        if e >= o.packs:
            gone = plans.swap_plan(o, e - o.packs)
            self.swap = gone
            self.code, self.stage = gone.old_code, IN_STATION
            self.site, self.slot = gone.station, gone.slot
            self.from_ms, self.soc0 = gone.switch_ms, gone.soc_out
            return
        self.code = plans.standalone_pack_code(o, e)
        self.soc0 = 20.0 + 50.0 * plans.unit(o.seed, 35, e)
        swap = plans.swap_of_pack(o, e)
        tag = plans.tag_of(o.vin_prefix)
        u = plans.unit(o.seed, 32, e)
        if swap is not None or u < 0.55 or e == plans.hot_pack(o):
            self.stage, self.site = IN_STATION, plans.swap_station_of(o, e)
            self.slot = e // plans.station_count(o)
            if swap is not None:
                self.swap, self.until_ms = swap, swap.switch_ms
                self.soc0 = swap.soc_in - 5.0  # charged to soc_in by the time it leaves
        elif u < 0.75:
            self.stage, self.site, self.slot = IN_STORAGE, f"WH{tag}{e % 7:04d}", e // 7
        elif u < 0.95:
            self.stage, self.site, self.slot = SECOND_LIFE, f"ESS{tag}{e % 13:04d}", e // 13
        else:
            self.stage, self.site, self.slot = RECYCLED, f"RC{tag}{e % 3:04d}", e // 3

    def reports_at(self, t: int) -> bool:
        return (self.from_ms is None or t >= self.from_ms) and (
            self.until_ms is None or t < self.until_ms
        )

    def state(self, o: FleetOptions, t: int) -> tuple[int, float, float]:
        """Work state (1 charging, 2 discharging, 3 idle), SOC %, current A (+ discharge)."""
        since = (t - (self.from_ms or plans.start_ms(o))) / 1000
        if self.stage == IN_STATION:
            soc = self.soc0 + CHARGE_PCT_PER_S * since
            return (1, soc, -75.0) if soc < 95.0 else (3, 95.0, 0.0)
        if self.stage == SECOND_LIFE:  # storage cycling with a two-hour period
            angle = 2 * math.pi * since / 7200 + self.k
            current = 20.0 * math.sin(angle)
            return (2 if current > 0 else 1), 50.0 + 30.0 * math.cos(angle), current
        if self.stage == RECYCLED:
            return 3, 3.0, 0.0
        return 3, 50.0, 0.0


def _health(o: FleetOptions, spot: PackSpot) -> tuple[int, int]:
    """SOH % and cycle count: older packs further down their life."""
    u = plans.unit(o.seed, 36, spot.k)
    base = {IN_STATION: 88, IN_STORAGE: 85, SECOND_LIFE: 70, RECYCLED: 55}[spot.stage]
    return base + int(10 * u), int((100 - base) * 40 + 300 * u)


# The incident of ``plans.hot_pack``: from 40 % of the span one cell has an internal short. Its
# voltage sags by 650 mV (a spread above the 500 mV consistency limit) and the probe next to it
# warms 3 °C a period up to 66 °C (past the 60 °C maximum operating temperature, at 0.3 °C/s:
# far below GB 38031's 1 °C/s, so no thermal runaway).
SHORT_CELL, SHORT_PROBE, SAG_V, HEAT_C, HOT_MAX_C = 17, 5, 0.650, 3, 66


def _short_ticks(o: FleetOptions, spot: PackSpot, t: int) -> int | None:
    """Reporting periods since the hot pack's short began (``None``: no short at ``t``)."""
    if spot.k != plans.hot_pack(o):
        return None
    began = plans.start_ms(o) + int(0.4 * plans.ticks(o)) * plans.period_ms(o)
    return (t - began) // plans.period_ms(o) if t >= began else None


def pack_frame(o: FleetOptions, spot: PackSpot, t: int, edition: int) -> PackFrame:
    """The real-time frame of ``spot``'s pack at ``t``."""
    rng = random.Random(o.seed * 1_000_003 + spot.k)  # per pack, the same each frame
    work, soc, current = spot.state(o, t)
    soh, cycles = _health(o, spot)
    ocv = 3.30 + 0.0085 * soc - current * 0.0004
    cell_list = [round(ocv - 0.012 * rng.random(), 3) for _ in range(CELLS)]
    warm = 6 if work == 1 else 0
    probe_list = [24 + warm + rng.randint(0, 3) for _ in range(PROBES)]
    short = _short_ticks(o, spot, t)
    if short is not None:
        cell_list[SHORT_CELL] = round(cell_list[SHORT_CELL] - SAG_V, 3)
        heated = probe_list[SHORT_PROBE] + HEAT_C * (short + 1)
        probe_list[SHORT_PROBE] = min(HOT_MAX_C, heated)
    cells, probes = tuple(cell_list), tuple(probe_list)
    state = PackState(
        spot.stage, work, int(soc), soh, cycles, round(sum(cells), 1), round(current, 1), 8000
    )
    return PackFrame(
        edition,
        0x02,
        ident=spot.code[7:],
        time=china_time(t),
        pack_code=spot.code,
        blocks=(
            state,
            Site(spot.site, spot.slot),
            PackCells(cells),
            PackProbes(probes),
            PackAlarm(0, 0, ()),
        ),
    )


def session_frame(o: FleetOptions, spot: PackSpot, t: int, edition: int, login: bool) -> PackFrame:
    """The pack's login (``login``) or logout frame at ``t``."""
    if not login:
        body: Any = PackLogout(1)
    else:
        original = None
        if spot.stage == SECOND_LIFE:  # re-coded for its second life: the vehicle code it had
            original = plans.pack_code_of_vin(f"LSECOND{spot.k:010d}")
        body = PackLogin(
            1, f"898604{spot.k % 10**14:014d}", original, 150.0, 60.0, 350.0, CELLS, PROBES
        )
    command = 0x01 if login else 0x04
    return PackFrame(
        edition, command, ident=spot.code[7:], time=china_time(t), pack_code=spot.code, body=body
    )


def _pack_tick(o: FleetOptions, e: int, n: int, t: int) -> Iterator[Message]:
    spot = PackSpot(o, e)
    p = plans.period_ms(o)
    key = spot.code.encode()
    edition = 2025 if plans.unit(o.seed, 34, e) < o.share_2025 else 2016
    if not spot.reports_at(t):
        if spot.until_ms is not None and spot.until_ms <= t < spot.until_ms + p:
            logout = session_frame(o, spot, t, edition, login=False)  # taken out for a vehicle
            yield Message(t, key, encode_pack_frame(logout), "logout", "battery")
        return
    if n == 0 or (spot.from_ms is not None and t - p < spot.from_ms):
        login = session_frame(o, spot, t, edition, login=True)  # its first tick here
        yield Message(t, key, encode_pack_frame(login), "login", "battery")
    raw = encode_pack_frame(pack_frame(o, spot, t, edition))
    if plans.unit(o.seed, 37, e, n) < o.bad_ratio:
        bad, kind = corrupt(raw, random.Random(o.seed * 7919 + e * 31 + n))
        yield Message(t, key, bad, kind, "battery")
    else:
        yield Message(t, key, raw, "realtime", "battery")


def pack_messages(o: FleetOptions) -> Iterator[Message]:
    """Every pack record of the span in time order (as ``charger_messages``)."""
    count = o.packs + plans.swap_count(o)
    for n in range(plans.ticks(o) + 1):
        for e in range(count):
            t = plans.tick_time(o, e, count, n)
            if t < o.end_ms:
                yield from _pack_tick(o, e, n, t)
