"""The three kinds together: vehicles, charging piles (and their operators' T/CEC pushes)
and standalone battery packs, one time-ordered stream of Kafka records.

``world_messages(FleetOptions(vehicles=..., chargers=..., packs=...))`` merges
``fleet.fleet_messages``, ``chargers.charger_messages`` and ``packs.pack_messages``; they
agree on who charges where and which packs are swapped through ``plans``, so the vehicles'
logins, the chargers' sessions and the packs' reports tell one story. With no chargers and
no packs it is exactly the vehicle fleet.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from devtools.sim.chargers import charger_messages
from devtools.sim.fleet import FleetOptions, Message, fleet_messages
from devtools.sim.packs import pack_messages

__all__ = ["world_messages"]


def world_messages(o: FleetOptions) -> Iterator[Message]:
    """Every record of the simulated span, all kinds, in time order."""
    streams = [fleet_messages(o)]
    if o.chargers:
        streams.append(charger_messages(o))
    if o.packs:
        streams.append(pack_messages(o))
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda m: m.t_ms)
