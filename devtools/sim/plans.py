"""Who is who and what happens when, for the three simulated kinds, as pure functions.

Every identity (VIN, OperatorID, charger and connector ids, GB/T 34014 pack codes, station ids)
and every coupling between kinds (which vehicle charges at which connector and when, which
vehicle swaps which pack at which station and when) is a function of the options and an
index: nothing is kept per entity, so a simulator of a million chargers or packs needs no
million objects up front, and the vehicle, charger and pack simulators agree without talking
to each other (each computes the same plan).

Roles of the vehicle indexes (``FleetOptions``):

- 0: the thermal-runaway vehicle (as in ``fleet``), never coupled;
- 1 .. 2C: vehicle ``k + 1`` is the one that charges at connector ``k`` (C piles of two
  connectors each), if that connector has a session in the simulated span;
- the last ``swaps`` indexes: vehicle ``V - 1 - m`` swaps its pack at a swap station (swap
  ``m``), taking station pack ``m``; only indexes above the charging ones, so one vehicle
  does one thing.

Plans are aligned to the reporting ticks (``tick_time``): a charger reports at
``start + phase + n x period``, so a session starts and its power knee falls on a reported
sample, and the trapezoid integral of the reported power is the reported energy.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from devtools.sim.envelope import vin_of
from devtools.sim.options import FleetOptions
from ingest.decoders.pack_code import encode_date_code

__all__ = [
    "CAPACITY_KWH",
    "ChargePlan",
    "SwapPlan",
    "charge_plan",
    "charger_id_of",
    "connector_id_of",
    "hot_connector",
    "hot_pack",
    "operator_of",
    "pack_code_of_vin",
    "profile_pile",
    "standalone_pack_code",
    "swap_count",
    "swap_of_pack",
    "swap_of_vehicle",
    "tag_of",
    "unit",
]

CAPACITY_KWH: Final = 60.0  # a 96-cell, 350 V class pack of the fleet
CONNECTORS_PER_PILE: Final = 2  # a DC pile with two guns (and AC piles alike, for simplicity)
_MASK: Final = (1 << 64) - 1
_B36: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def unit(seed: int, *parts: int) -> float:
    """A uniform number in [0, 1) from ``seed`` and ``parts`` (splitmix64: cheap, the same in
    every process, unlike ``hash``)."""
    x = seed & _MASK
    for p in parts:
        x = (x + 0x9E3779B97F4A7C15 + (p & _MASK)) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def tag_of(prefix: str) -> str:
    """Four characters 0-9 A-Z naming a run (from the VIN prefix): the demo gives each run its
    own prefix, so its operators and pack codes are new too, and histories do not mix."""
    n = zlib.crc32(prefix.encode())
    out = ""
    for _ in range(4):
        n, r = divmod(n, 36)
        out += _B36[r]
    return out


# --- chargers ---------------------------------------------------------------------------------


def operator_count(piles: int) -> int:
    """Operators the piles belong to: one per 100 piles, 1..20."""
    return max(1, min(20, piles // 100 + 1))


def operator_of(pile: int, piles: int, tag: str) -> str:
    """The T/CEC OperatorID (9 characters: ``MA`` + run tag + 3 digits) of a pile."""
    return f"MA{tag}{pile % operator_count(piles):03d}"


def charger_id_of(pile: int, piles: int, tag: str) -> str:
    """The profile's 17-character header code: OperatorID + an 8-digit pile code."""
    return f"{operator_of(pile, piles, tag)}{pile:08d}"


def connector_id_of(pile: int, connector: int, piles: int, tag: str) -> str:
    """ConnectorID: the pile's EquipmentID (its header code) + the gun number (19 chars)."""
    return f"{charger_id_of(pile, piles, tag)}{connector + 1:02d}"


def station_id_of(pile: int, tag: str) -> str:
    """StationID: ten piles per charging station."""
    return f"ST{tag}{pile // 10:08d}"


@dataclass(frozen=True, slots=True)
class ChargePlan:
    """One charging session on connector ``k`` (pile ``k // 2``, gun ``k % 2``) by ``vin``.

    Power is ``p0_kw`` from the first charging tick ``start_ms`` to the knee, then falls
    linearly to 0 at ``end_ms`` (the CV phase); knee and end are ticks, so the trapezoid
    integral of the samples equals ``energy_at``. The vehicle's SOC is ``soc0`` plus that
    energy over ``CAPACITY_KWH``.
    """

    connector: int
    vin: str
    vehicle: int
    start_ms: int
    knee_ms: int
    end_ms: int
    p0_kw: float
    dc: bool
    soc0: float
    seq: str  # StartChargeSeq, 27 characters

    def power_at(self, t: int) -> float:
        if t < self.start_ms or t >= self.end_ms:
            return 0.0
        if t <= self.knee_ms:
            return self.p0_kw
        return self.p0_kw * (self.end_ms - t) / (self.end_ms - self.knee_ms)

    def energy_at(self, t: int) -> float:
        """kWh delivered from ``start_ms`` to ``t`` (closed form of the power above)."""
        t = min(max(t, self.start_ms), self.end_ms)
        flat = (min(t, self.knee_ms) - self.start_ms) * self.p0_kw
        if t > self.knee_ms:
            span = self.end_ms - self.knee_ms
            done = t - self.knee_ms
            flat += self.p0_kw * (done - done * done / (2 * span))
        return flat / 3_600_000

    def soc_at(self, t: int) -> float:
        return self.soc0 + 100.0 * self.energy_at(t) / CAPACITY_KWH

    def voltage_at(self, t: int) -> float:
        """The output voltage: the pack's (96 cells) for DC, 220 V phase A for AC."""
        if not self.dc:
            return 220.0
        return round(96 * (3.40 + 0.0075 * self.soc_at(t)) + 4.0, 1)


def ticks(o: FleetOptions) -> int:
    """Reporting ticks in the simulated span."""
    return int(o.minutes * 60 / o.interval_s)


def period_ms(o: FleetOptions) -> int:
    return int(o.interval_s * 1000)


def start_ms(o: FleetOptions) -> int:
    return int(o.end_ms - o.minutes * 60_000)


def tick_time(o: FleetOptions, index: int, count: int, n: int) -> int:
    """Time of tick ``n`` of entity ``index`` of ``count``: phases spread evenly over one
    period and increasing with the index, so a kind's frames come out in time order without
    a sort (devices are not synchronised)."""
    p = period_ms(o)
    return start_ms(o) + (index * p) // max(count, 1) + n * p


def fault_connector(o: FleetOptions, k: int) -> bool:
    """Pile 0's second gun is stuck in fault for the whole span (a rule must see it)."""
    return bool(o.runaway) and k == 1


HOT_CONNECTOR: Final = 2  # pile 1's first gun


def hot_connector(o: FleetOptions, k: int) -> bool:
    """Connector 2 (pile 1, gun 0) has a worn contact: it always has a session, during which
    its terminal heats past the connector limit (``chargers``: GB/T 20234.1's 90 °C)."""
    return bool(o.runaway) and k == HOT_CONNECTOR


def profile_pile(pile: int) -> bool:
    """Piles 0 and 1 always report in the charger profile, never by T/CEC pushes: their
    incidents (the fault codes of pile 0's stuck gun, pile 1's connector temperature) and
    connector 0's session power (the one the demo shows) are fields only the profile has."""
    return pile < 2


def charge_plan(o: FleetOptions, k: int) -> ChargePlan | None:
    """The session of connector ``k``, or ``None`` (idle all along, or the span is too short:
    fewer than 8 ticks)."""
    piles = o.chargers
    vehicle = k + 1
    n_ticks = ticks(o)
    if k >= CONNECTORS_PER_PILE * piles or vehicle >= o.vehicles or n_ticks < 8:
        return None
    if fault_connector(o, k) or (k > 0 and not hot_connector(o, k) and unit(o.seed, 11, k) >= 0.7):
        return None
    pile, gun = divmod(k, CONNECTORS_PER_PILE)
    u = unit(o.seed, 12, k)
    first = 2 + int(u * 0.25 * n_ticks)  # plugged in one tick before: "occupied"
    length = max(3, int((0.35 + 0.15 * unit(o.seed, 13, k)) * n_ticks))
    length = min(length, n_ticks - first - 3)  # room for the end, the order, the idle
    if length < 3:
        return None
    knee = first + max(1, int(length * 0.7))
    dc = unit(o.seed, 14, pile) < 0.7
    soc0 = 15.0 + 45.0 * unit(o.seed, 15, k)
    hours = length * o.interval_s / 3600
    rated = 60.0 + 60.0 * unit(o.seed, 16, pile) if dc else 7.0
    p0 = min(rated, (95.0 - soc0) / 100 * CAPACITY_KWH / (0.85 * hours))
    start = tick_time(o, pile, piles, first)  # a pile reports its guns in one frame
    tag = tag_of(o.vin_prefix)
    return ChargePlan(
        connector=k,
        vin=vin_of(vehicle, o.vin_prefix),
        vehicle=vehicle,
        start_ms=start,
        knee_ms=tick_time(o, pile, piles, knee),
        end_ms=tick_time(o, pile, piles, first + length),
        p0_kw=round(p0, 1),
        dc=dc,
        soc0=soc0,
        seq=f"{operator_of(pile, piles, tag)}{pile:08d}{gun + 1:02d}{first:08d}",
    )


def vehicle_charge(o: FleetOptions, i: int) -> ChargePlan | None:
    """The session vehicle ``i`` has at a simulated charger, if any."""
    if i < 1 or i > CONNECTORS_PER_PILE * o.chargers:
        return None
    return charge_plan(o, i - 1)


# --- packs and swaps --------------------------------------------------------------------------


def pack_code_of_vin(vin: str) -> str:
    """The GB/T 34014 code of the pack a simulated vehicle is built with: manufacturer ``SIM``,
    a pack (P) of ternary (E) cells, spec ``96``; traceability = the VIN prefix's tag + ``V`` +
    two VIN digits, the production date from the VIN, serial = the VIN's last 7 characters."""
    made = date(2020, 1, 1) + timedelta(days=zlib.crc32(vin.encode()) % 2000)
    return f"SIMPE96{tag_of(vin[:-9])}V{vin[-9:-7]}{encode_date_code(made)}{vin[-7:]}"


def standalone_pack_code(o: FleetOptions, k: int) -> str:
    """Code of standalone pack ``k`` (a swap station's, a warehouse's, a second-life site's):
    as a vehicle's, with ``S`` in the traceability code and LFP (B) cells for odd ``k``."""
    made = date(2019, 1, 1) + timedelta(days=int(unit(o.seed, 31, k) * 2500))
    chem = "B" if k % 2 else "E"
    return (
        f"SIMP{chem}96{tag_of(o.vin_prefix)}S{k // 10**7 % 100:02d}"
        f"{encode_date_code(made)}{k % 10**7:07d}"
    )


def swap_count(o: FleetOptions) -> int:
    """How many swaps the span holds: one per ten standalone packs (at least one), as many as
    there are vehicles left over by the chargers, none when the span has fewer than 8 ticks."""
    if o.packs <= 0 or ticks(o) < 8:
        return 0
    free = o.vehicles - 1 - CONNECTORS_PER_PILE * o.chargers
    return max(0, min(max(1, o.packs // 10), free, o.packs))


def station_count(o: FleetOptions) -> int:
    return max(1, o.packs // 20)


def swap_station_of(o: FleetOptions, k: int) -> str:
    return f"SW{tag_of(o.vin_prefix)}{k % station_count(o):06d}"


@dataclass(frozen=True, slots=True)
class SwapPlan:
    """Swap ``m``: vehicle ``vin`` logs out at ``out_ms`` at ``station``; from ``switch_ms``
    its own pack ``old_code`` reports from the station (slot ``slot``) and station pack
    ``new_code`` (pack ``m``) no longer does; the vehicle logs in with ``new_code`` at
    ``in_ms``."""

    m: int
    vehicle: int
    vin: str
    station: str
    slot: int
    old_code: str
    new_code: str
    out_ms: int
    switch_ms: int
    in_ms: int
    soc_out: float  # the vehicle's SOC as it arrives (its old pack's, in the station)
    soc_in: float  # the station pack's SOC as it leaves (the vehicle's after the swap)


def swap_plan(o: FleetOptions, m: int) -> SwapPlan:
    vehicle = o.vehicles - 1 - m
    vin = vin_of(vehicle, o.vin_prefix)
    p = period_ms(o)
    n_ticks = ticks(o)
    out = start_ms(o) + int((0.3 + 0.3 * unit(o.seed, 41, m)) * n_ticks) * p
    return SwapPlan(
        m=m,
        vehicle=vehicle,
        vin=vin,
        station=swap_station_of(o, m),
        slot=m // station_count(o),
        old_code=pack_code_of_vin(vin),
        new_code=standalone_pack_code(o, m),
        out_ms=out,
        switch_ms=out + p,
        in_ms=out + 2 * p,
        soc_out=12.0 + 20.0 * unit(o.seed, 42, m),
        soc_in=92.0 + 3.0 * unit(o.seed, 43, m),
    )


def hot_pack(o: FleetOptions) -> int | None:
    """The standalone pack with an incident (``packs``: a cell with an internal short in a swap
    station - its voltage sags and its probe heats past the maximum operating temperature): the
    first pack after the ones the swaps take, so it stays in its station all along."""
    k = swap_count(o)
    return k if o.runaway and k < o.packs and ticks(o) >= 8 else None


def swap_of_vehicle(o: FleetOptions, i: int) -> SwapPlan | None:
    m = o.vehicles - 1 - i
    return swap_plan(o, m) if 0 <= m < swap_count(o) else None


def swap_of_pack(o: FleetOptions, k: int) -> SwapPlan | None:
    """The swap that takes station pack ``k`` into a vehicle, if any."""
    return swap_plan(o, k) if k < swap_count(o) else None
