"""A vehicle's day as a closed-form function of (seed, vehicle, time): nothing is carried from
one frame to the next, so a generator of millions of vehicles keeps no per-vehicle state.

Each vehicle repeats its own cycle (4-11 hours, a random phase): drive out, park, drive back,
park, charge, park. The cycle is energy-neutral: the charge puts back what the two drives
took (``charge_kw x charge_s = drive_kw x drive_s``), so the SOC is periodic and, at every
instant, ``soc_top - 100 x (energy driven - energy charged) / CAPACITY_KWH``: the SOC agrees
with the integral of the reported current times the pack voltage. The odometer is the cycles
done times the cycle's distance plus the distance so far; the position moves out from home on
the first drive and back on the second. Rare faults (``FAULT_PER_HOUR``) escalate an alarm
from level 1 to 3 over six minutes while the pack heats, then clear (the driver stops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from devtools.sim.fleet import SHENZHEN
from devtools.sim.plans import CAPACITY_KWH, unit

__all__ = ["Fault", "VehicleCycle", "VehicleState", "fault_at"]

_DRIVE, _PARK, _CHARGE = "drive", "park", "charge"
# Fault escalation: 2 minutes per level, level 3 last; its pack temperature at each level.
# Cycles are counted from here: the odometer is ``odo0`` then (a vehicle's cycles cover
# 50-300 km a day: counting from 1970 would put millions of km on it).
ODOMETER_EPOCH_MS: Final = 1_767_196_800_000  # 2026-01-01 00:00 +08:00
FAULT_STAGE_S: Final = 120
FAULT_TEMPS_C: Final = (46.0, 52.0, 58.0)
# GB/T 32960.3 general alarm bits: 0 temperature difference, 1 battery high temperature.
FAULT_FLAGS: Final = (1 << 0, (1 << 0) | (1 << 1), (1 << 0) | (1 << 1))


@dataclass(frozen=True, slots=True)
class VehicleState:
    """What a vehicle reports at one instant."""

    mode: str  # drive | park | charge
    soc: float  # %
    current_a: float  # + discharge, - charge (GB/T 32960 sign)
    speed_kmh: float
    odometer_km: float
    lon: float
    lat: float
    temp_c: float  # pack temperature (probes add their offsets)
    ambient_c: float
    fast_charge: bool


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault in progress: alarm level 1..3 and the general alarm flags."""

    level: int
    flags: int
    temp_c: float


def pack_voltage(soc: float) -> float:
    """Open-circuit voltage of the fleet's 96-cell pack at ``soc`` (as ``fleet.SimVehicle``)."""
    return 96 * (3.40 + 0.0075 * soc)


class VehicleCycle:
    """The parameters of vehicle ``i``'s cycle, all from (seed, i): cheap to rebuild per frame."""

    __slots__ = (
        "ambient",
        "charge_kw",
        "charge_s",
        "cycle_s",
        "distance_km",
        "drive1_s",
        "drive2_s",
        "drive_kw",
        "heading",
        "home",
        "odo0",
        "park1_s",
        "park2_s",
        "phase_s",
        "soc_top",
        "speed",
    )

    def __init__(self, seed: int, i: int) -> None:
        def u(n: int) -> float:
            return unit(seed, 50 + n, i)

        self.drive_kw = 8.0 + 8.0 * u(0)
        self.speed = self.drive_kw / (0.14 + 0.06 * u(1))  # km/h at 0.14-0.20 kWh/km
        self.soc_top = 80.0 + 15.0 * u(2)
        # The two drives use at most down to 15 % SOC.
        budget_s = (self.soc_top - 15.0) / 100 * CAPACITY_KWH / self.drive_kw * 3600
        drive_s = min(budget_s, 1200.0 + 4800.0 * u(3))  # 20-100 minutes in all
        self.drive1_s = drive_s / 2
        self.drive2_s = drive_s / 2
        self.charge_kw = 7.0 if u(4) < 0.3 else 60.0 + 60.0 * u(5)
        self.charge_s = self.drive_kw * drive_s / self.charge_kw  # energy-neutral
        self.park1_s = 1800.0 + 10800.0 * u(6)
        self.park2_s = 600.0 + 3600.0 * u(7)
        park3_s = 600.0 + 7200.0 * u(8)
        self.cycle_s = drive_s + self.charge_s + self.park1_s + self.park2_s + park3_s
        self.phase_s = self.cycle_s * u(9)
        self.distance_km = self.speed * drive_s / 3600
        self.odo0 = 500.0 + 100_000.0 * u(10)
        self.home = (SHENZHEN[0] + 0.5 * (u(11) - 0.5), SHENZHEN[1] + 0.24 * (u(12) - 0.5))
        self.heading = 2 * math.pi * u(13)
        self.ambient = 18.0 + 13.0 * u(14)

    def state(self, t_ms: int) -> VehicleState:
        """The vehicle at epoch ``t_ms``."""
        s = (t_ms - ODOMETER_EPOCH_MS) / 1000 + self.phase_s
        cycles, tau = divmod(s, self.cycle_s)
        d1, p1, d2, p2 = self.drive1_s, self.park1_s, self.drive2_s, self.park2_s
        kwh_per_s = self.drive_kw / 3600
        out_km = self.speed * d1 / 3600
        after = 6.0  # what a park cools down from: the drive before it, or the charge
        if tau < d1:
            mode, driven, away, since = _DRIVE, tau, self.speed * tau / 3600, tau
        elif tau < d1 + p1:
            mode, driven, away, since = _PARK, d1, out_km, tau - d1
        elif tau < d1 + p1 + d2:
            back = tau - d1 - p1
            mode, driven, away, since = _DRIVE, d1 + back, out_km - self.speed * back / 3600, back
        else:
            mode, driven, away = _PARK, d1 + d2, 0.0
            since = tau - d1 - p1 - d2
        charged = 0.0
        end_p2 = d1 + p1 + d2 + p2
        if end_p2 <= tau < end_p2 + self.charge_s:
            mode, since = _CHARGE, tau - end_p2
            charged = since * self.charge_kw / 3600
        elif tau >= end_p2 + self.charge_s:
            charged = self.charge_s * self.charge_kw / 3600
            since = tau - end_p2 - self.charge_s
            after = _charge_rise(self.charge_kw)
        soc = self.soc_top - 100 * (driven * kwh_per_s - charged) / CAPACITY_KWH
        volts = pack_voltage(soc)
        if mode == _DRIVE:
            current = self.drive_kw * 1000 / volts
            speed = self.speed
            rise = 6.0
        elif mode == _CHARGE:
            current = -self.charge_kw * 1000 / volts
            speed = 0.0
            rise = _charge_rise(self.charge_kw)
        else:
            current, speed, rise = 0.4, 0.0, 1.0  # the BMS and the telematics unit
        # The pack moves towards its mode's temperature with a 10-minute time constant: warms
        # from the parked temperature when driving or charging, cools after them when parked.
        decay = math.exp(-since / 600)
        if mode == _PARK:
            temp = self.ambient + 1.0 + (after - 1.0) * decay
        else:
            temp = self.ambient + 1.0 + (rise - 1.0) * (1 - decay)
        odo = max(0.0, self.odo0 + cycles * self.distance_km + self.speed * driven / 3600)
        return VehicleState(
            mode=mode,
            soc=soc,
            current_a=current,
            speed_kmh=speed,
            odometer_km=odo,
            lon=self.home[0] + away / 102.0 * math.cos(self.heading),  # ~102 km/degree here
            lat=self.home[1] + away / 111.0 * math.sin(self.heading),
            temp_c=temp,
            ambient_c=self.ambient,
            fast_charge=self.charge_kw >= 10,
        )


def _charge_rise(kw: float) -> float:
    """The pack's rise over ambient while charging: AC warms it little, DC more."""
    return 4.0 if kw < 10 else 12.0


def fault_at(seed: int, i: int, t_ms: int, per_hour: float) -> Fault | None:
    """The fault vehicle ``i`` has at ``t_ms``, if any: each hour of each vehicle holds one with
    probability ``per_hour``, at a random minute; it escalates 1 -> 2 -> 3 and clears."""
    if per_hour <= 0:
        return None
    hour, into_ms = divmod(t_ms, 3_600_000)
    if unit(seed, 70, i, hour) >= per_hour:
        return None
    length = len(FAULT_TEMPS_C) * FAULT_STAGE_S
    start_s = unit(seed, 71, i, hour) * (3600 - length)
    stage = int((into_ms / 1000 - start_s) // FAULT_STAGE_S)
    if not 0 <= stage < len(FAULT_TEMPS_C):
        return None
    return Fault(level=stage + 1, flags=FAULT_FLAGS[stage], temp_c=FAULT_TEMPS_C[stage])
