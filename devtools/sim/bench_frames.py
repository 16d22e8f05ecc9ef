"""Many distinct real-time frames, fast: the benchmark's preload, per entity kind.

Encoding a full real-time frame costs ~40 us (structured encoder), so a million frames would
take minutes. Instead each simulated device encodes a few frames of different states once, and
every frame after is one of those with its collection time patched in place and its BCC
recomputed: real frames, each (device, time) unique, at ~3 us each. Vehicles
(``devtools.sim.fleet``, both editions by the fleet's share), charging piles (two connectors
charging: status, output, vehicle/BMS and order blocks) and standalone packs
(``devtools.sim.packs``); all three profiles put the 6-byte time first in the data unit.

Beyond ``POOL`` devices (3,000,000 in a scale run) encoding templates per device would cost
minutes and gigabytes (~0.4 ms and ~2.8 KB each): device ``i`` then reuses the templates of
device ``i % TEMPLATE_DEVICES`` with its own identity (VIN, pile code, pack code) written over the
template device's at the offsets where it occurs, so memory is the pool's and each frame
still costs a copy, two patches and a BCC.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import timedelta

from devtools.sim import plans
from devtools.sim.envelope import TIME_AT, china_time, reseal, time_bytes
from devtools.sim.fleet import SimVehicle, vin_of
from devtools.sim.options import FleetOptions
from devtools.sim.packs import PackSpot, pack_frame
from ingest.decoders import encode_frame
from ingest.decoders.battery import encode_pack_frame
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    ConnectorStatus,
    Output,
    VehicleDemand,
    encode_charger_frame,
)

__all__ = ["KINDS", "frames_of_kind", "realtime_frames"]

KINDS = ("vehicle", "charger", "battery")
_Templates = Callable[[int, int, int, int], tuple[bytes, list[bytes]]]


def _vehicle(i: int, templates: int, start_ms: int, interval_ms: int) -> tuple[bytes, list[bytes]]:
    rng = random.Random(7 * 1_000_003 + i)
    edition = 2025 if rng.random() < 0.4 else 2016
    v = SimVehicle(vin_of(i, "LNEVBEN"), random.Random(7 * 7919 + i), edition)
    frames = []
    for k in range(templates):
        v.step(30.0)
        frames.append(encode_frame(v.frame(start_ms + k * interval_ms)))
    return v.vin.encode(), frames


_BENCH = FleetOptions(vehicles=1, chargers=1_000_000, packs=1_000_000, vin_prefix="LNEVBEN")


def _charger(i: int, templates: int, start_ms: int, interval_ms: int) -> tuple[bytes, list[bytes]]:
    tag = plans.tag_of(_BENCH.vin_prefix)
    op = plans.operator_of(i, _BENCH.chargers, tag)
    charger_id = plans.charger_id_of(i, _BENCH.chargers, tag)
    frames = []
    for k in range(templates):
        blocks: list[object] = []
        for gun in range(plans.CONNECTORS_PER_PILE):
            cid = plans.connector_id_of(i, gun, _BENCH.chargers, tag)
            kw = 60.0 + (i + k + gun) % 40
            volts = 380.0 + (i + 3 * k) % 40
            blocks += [
                ConnectorStatus(cid, 3, 50, 10),
                Output(cid, volts, round(kw * 1000 / volts, 1), kw, 1.5 * k + gun, 35),
                VehicleDemand(cid, vin_of(2 * i + gun, "LNEVBEN"), 40 + k, volts + 5, 200.0),
                ChargeOrder(
                    cid, f"{op}{i:08d}{gun + 1:02d}{0:08d}", 2, china_time(start_ms), 1.0, 0.5, 1.5
                ),
            ]
        t = china_time(start_ms) + timedelta(milliseconds=k * interval_ms)
        frame = ChargerFrame(0x02, charger_id, time=t, blocks=tuple(blocks))  # type: ignore[arg-type]
        frames.append(encode_charger_frame(frame))
    return charger_id.encode(), frames


def _pack(i: int, templates: int, start_ms: int, interval_ms: int) -> tuple[bytes, list[bytes]]:
    o = FleetOptions(packs=_BENCH.packs, end_ms=start_ms + 600_000, vin_prefix="LNEVBEN")
    spot = PackSpot(o, i)
    edition = 2025 if plans.unit(o.seed, 34, i) < 0.4 else 2016
    frames = [
        encode_pack_frame(pack_frame(o, spot, start_ms + k * interval_ms * 30, edition))
        for k in range(templates)
    ]
    return spot.code.encode(), frames


_BUILDERS: dict[str, _Templates] = {"vehicle": _vehicle, "charger": _charger, "battery": _pack}


def frames_of_kind(
    kind: str,
    devices: int,
    per_device: int,
    *,
    start_ms: int,
    interval_ms: int = 10_000,
    templates: int = 8,
) -> Iterator[tuple[bytes, bytes]]:
    """``devices * per_device`` (key, frame) pairs of ``kind``, interleaved in time like
    gateway traffic."""
    build = _BUILDERS[kind]
    own = devices if devices <= POOL else TEMPLATE_DEVICES
    keys, bases = [], []
    for i in range(own):
        key, frames = build(i, templates, start_ms, interval_ms)
        keys.append(key)
        bases.append(frames)
    if devices <= POOL:
        for j in range(per_device):
            stamp = time_bytes(start_ms + j * interval_ms)
            for i in range(devices):
                frame = bytearray(bases[i][j % templates])
                frame[TIME_AT : TIME_AT + 6] = stamp
                yield keys[i], reseal(frame)
        return
    identity = _IDENTITIES[kind]
    spots = [_spots(bases[t], identity(t)) for t in range(own)]
    for j in range(per_device):
        stamp = time_bytes(start_ms + j * interval_ms)
        for i in range(devices):
            t = i % own
            ident = identity(i)
            frame = bytearray(bases[t][j % templates])
            frame[TIME_AT : TIME_AT + 6] = stamp
            for at, width in spots[t][j % templates]:
                frame[at : at + width] = ident[-width:]
            yield ident, reseal(frame)


# Up to POOL devices each have templates of their own; beyond it, every device's frames are
# derived from those of TEMPLATE_DEVICES template devices (module docstring).
POOL = 20_000
TEMPLATE_DEVICES = 1_000


def _vehicle_id(i: int) -> bytes:
    return vin_of(i, "LNEVBEN").encode()


def _charger_id(i: int) -> bytes:
    return plans.charger_id_of(i, _BENCH.chargers, plans.tag_of(_BENCH.vin_prefix)).encode()


_PACK_OPTIONS = FleetOptions(packs=_BENCH.packs, vin_prefix="LNEVBEN")


def _pack_id(i: int) -> bytes:
    return plans.standalone_pack_code(_PACK_OPTIONS, i).encode()


# A device's identity as its frames carry it (and its Kafka key): the VIN, the pile code (also
# the prefix of its connector ids and order numbers) or the 24-character pack code (whose last
# 17 characters are the header ID).
_IDENTITIES: dict[str, Callable[[int], bytes]] = {
    "vehicle": _vehicle_id,
    "charger": _charger_id,
    "battery": _pack_id,
}


def _spots(frames: list[bytes], ident: bytes) -> list[list[tuple[int, int]]]:
    """Per template frame, (offset, width) of every occurrence of the identity: the whole of
    it, and the 17-character header form (the pack code's tail) where that stands alone."""
    out = []
    for frame in frames:
        found = []
        for needle in dict.fromkeys((ident, ident[-17:])):
            at = frame.find(needle)
            while at >= 0:
                found.append((at, len(needle)))
                at = frame.find(needle, at + 1)
        if not found:
            raise ValueError(f"bench_frames: identity {ident!r} not found in its frame")
        out.append(found)
    return out


def realtime_frames(
    vehicles: int, per_vehicle: int, *, start_ms: int, interval_ms: int = 10_000
) -> Iterator[tuple[bytes, bytes]]:
    """``vehicles * per_vehicle`` vehicle (key, frame) pairs (``frames_of_kind("vehicle")``)."""
    return frames_of_kind(
        "vehicle", vehicles, per_vehicle, start_ms=start_ms, interval_ms=interval_ms
    )
