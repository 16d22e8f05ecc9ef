"""Many distinct real-time frames, fast: the benchmark's preload.

Encoding a full real-time frame costs ~40 us (structured encoder), so a million frames would
take minutes. Instead each simulated vehicle (``devtools.sim.fleet``) encodes a few frames of
different states once, and every frame after is one of those with its collection time patched
in place and its BCC recomputed: real GB/T 32960 frames, each (VIN, time) unique, at ~3 us
each. Both editions, by the fleet's share.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from devtools.sim.envelope import TIME_AT, reseal, time_bytes
from devtools.sim.fleet import SimVehicle, vin_of
from ingest.decoders import encode_frame

__all__ = ["realtime_frames"]


def realtime_frames(
    vehicles: int,
    per_vehicle: int,
    *,
    start_ms: int,
    interval_ms: int = 10_000,
    templates: int = 8,
    share_2025: float = 0.4,
    seed: int = 7,
) -> Iterator[tuple[bytes, bytes]]:
    """``vehicles * per_vehicle`` (key, frame) pairs, interleaved in time like gateway traffic."""
    rng = random.Random(seed)
    bases: list[list[bytes]] = []
    for i in range(vehicles):
        edition = 2025 if rng.random() < share_2025 else 2016
        v = SimVehicle(vin_of(i, "LNEVBEN"), random.Random(seed * 7919 + i), edition)
        frames = []
        for k in range(templates):
            v.step(30.0)
            frames.append(encode_frame(v.frame(start_ms + k * interval_ms)))
        bases.append(frames)
    keys = [vin_of(i, "LNEVBEN").encode() for i in range(vehicles)]
    for j in range(per_vehicle):
        t = start_ms + j * interval_ms
        stamp = time_bytes(t)
        for i in range(vehicles):
            frame = bytearray(bases[i][j % templates])
            frame[TIME_AT : TIME_AT + 6] = stamp
            yield keys[i], reseal(frame)
