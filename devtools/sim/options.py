"""The options of a simulation (``fleet``, ``chargers``, ``packs``, ``world``): how many of
each kind, over what span, how messy. Its own module so that ``plans`` (which all simulators
share) and ``fleet`` can both take it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FleetOptions"]


@dataclass(frozen=True, slots=True)
class FleetOptions:
    vehicles: int = 3000
    minutes: float = 10.0  # simulated time span per vehicle
    interval_s: float = 10.0  # real-time reporting period (GB/T 32960.3: <= 30 s)
    share_2025: float = 0.4  # share of vehicles speaking the 2025 edition
    bad_ratio: float = 0.002  # share of frames corrupted on the way
    gap_ratio: float = 0.05  # share of vehicles with a network gap, reissued later
    # incidents: one vehicle goes into thermal runaway near the end, a connector is stuck in fault
    runaway: bool = True
    seed: int = 1
    end_ms: int = 1_782_878_400_000  # simulated "now" (2026-07-01 12:00 +08:00 by default)
    vin_prefix: str = "LNEVSIM"  # also names the run's operators and pack codes (plans.tag_of)
    chargers: int = 0  # charging piles, two connectors each (devtools.sim.chargers)
    packs: int = 0  # standalone packs: swap stations, storage, second life (devtools.sim.packs)
    tcec_share: float = 0.3  # share of piles whose operator reports them by T/CEC 102 pushes
