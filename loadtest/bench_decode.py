"""Decoder throughput: frames/s and MB/s of the native path (and the structured/JSON path).

    python -m loadtest.bench_decode [--seconds 3] [--frames 2000] [--profile]

Phases, each timed on one core for ``--seconds``:
- ceiling: ``parse_envelope`` alone (header checks + BCC), the floor every path pays;
- the native path, one frame per call (``decode_rows``) and a batch of 1,000 per call
  (``decode_rows_batch``, the pipeline's call: rows plus COPY tuples), over the public vectors
  and over generated typical real-time frames of both editions (about 330 bytes in 2016:
  vehicle, one motor, position, extremes, alarm, 96 cells, 32 probes; the 2025 frame adds the
  262-byte RSA signature block);
- the structured decoder (``decode_frame``) and its JSON rendering (``frame_to_json``), and the
  native JSON of ``nev-ingest decode`` (``fast_frame_json``, the same bytes).

loadtest/bench_native.py measures the native floor (no Python objects) and rtm-con beside it.

A progress line per phase goes to stderr; the LAST stdout line is one JSON object with the
figures and the parameters (Python, machine, frame sizes, counts). ``--profile`` prints the
cProfile of the 2016 typical phase instead of timing it.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import struct
import sys
import time
from collections.abc import Callable, Sequence, Sized
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from contract.clock import CHINA_TZ
from devtools.sim import envelope
from ingest.decoders import decode_frame, frame_to_json
from ingest.decoders.envelope import parse_envelope
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows, decode_rows_batch
from ingest.decoders.jsonview import fast_frame_json
from loadtest.vectors import vectors_path

VECTORS = vectors_path()


# --- frame building (the load generator's typical frames) -----------------------------------


def _cells(rng: random.Random, n: int) -> list[int]:
    # A pack's cells sit within ~20 mV of each other; the level moves with the state of charge,
    # so some packs straddle a 256 mV boundary (e.g. LFP around 3.328 V = 0x0D00).
    level = rng.randint(3200, 4150)
    return [level + rng.randint(-10, 10) for _ in range(n)]


def _extremes(cells: list[int], probes: bytes) -> bytes:
    """The 2016 extremes block a BMS computes from its own cells and probes (pack 1)."""
    vmax, vmin = max(cells), min(cells)
    tmax, tmin = max(probes), min(probes)
    return struct.pack(
        ">BBHBBHBBBBBB",
        1, cells.index(vmax) + 1, vmax, 1, cells.index(vmin) + 1, vmin,
        1, probes.index(tmax) + 1, tmax, 1, probes.index(tmin) + 1, tmin,
    )  # fmt: skip


def typical_data(edition: int, rng: random.Random, ts: datetime, cells: int = 96) -> bytes:
    """The data unit of a typical real-time frame of ``edition`` (blocks in standard order)."""
    probes = bytes(rng.randint(60, 75) for _ in range(32))  # 20..35 °C
    cell_values = _cells(rng, cells)
    cell_raw = struct.pack(f">{cells}H", *cell_values)
    speed, soc = rng.randint(0, 1200), rng.randint(10, 100)
    lon, lat = rng.randint(113_700_000, 114_600_000), rng.randint(22_400_000, 22_900_000)
    out = [envelope.time_bytes(int(ts.timestamp() * 1000))]
    if edition == 2016:
        out += [
            b"\x01",
            struct.pack(
                ">BBBHIHHBBBHBB",
                1,
                3,
                1,
                speed,
                123_456,
                6500,
                10_000 + rng.randint(-500, 500),
                soc,
                1,
                0x0E,
                5000,
                rng.randint(0, 100),
                0,
            ),
            b"\x02\x01",
            struct.pack(">BBBHHBHH", 1, 1, 80, 23_000, 20_500, 85, 6500, 10_100),
            b"\x05",
            struct.pack(">BII", 0, lon, lat),
            b"\x06",
            _extremes(cell_values, probes),
            b"\x07",
            struct.pack(">BIBBBB", 0, 0, 0, 0, 0, 0),
            b"\x08\x01",
            struct.pack(">BHHHHB", 1, 6500, 10_000, cells, 1, cells) + cell_raw,
            b"\x09\x01",
            struct.pack(">BH", 1, len(probes)) + probes,
        ]
    else:
        out += [
            b"\x01",
            struct.pack(
                ">BBBHIHHBBBH",
                1,
                3,
                1,
                speed,
                123_456,
                6500,
                30_000 + rng.randint(-500, 500),
                soc,
                1,
                0x0E,
                5000,
            ),
            b"\x02\x01",
            struct.pack(">BBBHIB", 1, 1, 80, 35_000, 200_500, 85),
            b"\x05",
            struct.pack(">BBII", 0, 2, lon, lat),
            b"\x06",
            struct.pack(">BIBBBBB", 0, 0, 0, 0, 0, 0, 0),
            b"\x07\x01",
            struct.pack(">BHHH", 1, 6500, 30_000, cells) + cell_raw,
            b"\x08\x01",
            struct.pack(">BH", 1, len(probes)) + probes,
            # RSA-2048 signature as real 2025 terminals send it: R = 256 bytes, S empty.
            b"\xff\x02",
            struct.pack(">H", 256) + rng.randbytes(256) + b"\x00\x00",
        ]
    return b"".join(out)


def typical_frames(edition: int, count: int, seed: int = 32960) -> list[bytes]:
    """``count`` typical real-time frames from 500 vehicles reporting at 1 Hz."""
    rng = random.Random(seed + edition)
    start = datetime(2026, 3, 1, 8, 0, 0, tzinfo=CHINA_TZ)
    frames = []
    for i in range(count):
        vin = envelope.vin_of(i % 500, f"LNEV{edition % 100:02d}")
        ts = start + timedelta(seconds=i // 500)
        frames.append(envelope.frame(edition, 0x02, vin, typical_data(edition, rng, ts)))
    return frames


def vector_frames() -> list[bytes]:
    lines = VECTORS.read_text(encoding="utf-8").splitlines()
    return [bytes.fromhex(json.loads(line)["hex"]) for line in lines if line.strip()]


_F = TypeVar("_F", bound=Sized)  # a frame, or a batch of frames


# --- timing ----------------------------------------------------------------------------------


def _run(
    name: str,
    fn: Callable[[_F], object],
    frames: Sequence[_F],
    seconds: float,
    per_item: int = 1,
    size: int | None = None,
) -> dict[str, Any]:
    """Call ``fn`` over ``frames`` round-robin for ``seconds``; FrameErrors are counted. An
    item may be a batch of ``per_item`` frames (``size``: their bytes in all).

    Each pass over the frames is timed on its own: the machine is shared (2 cores, other
    engineers' tests), so the figure reported is the median pass rate, with the best pass
    (the least disturbed) and the overall mean beside it. The garbage collector stays on, as
    in the pipeline.
    """
    size = sum(len(f) for f in frames) if size is None else size
    rejected = 0
    passes: list[float] = []
    began = time.perf_counter()
    while sum(passes) < seconds:
        t0 = time.perf_counter()
        for frame in frames:
            try:
                fn(frame)
            except FrameError:
                rejected += 1
        passes.append(time.perf_counter() - t0)
        if time.perf_counter() - began > seconds * 3:
            break  # a very slow path: do not let one phase run away
    elapsed = sum(passes)
    distinct = len(frames) * per_item
    n = len(passes) * distinct
    rates = sorted(distinct / p for p in passes)
    median = rates[len(rates) // 2]
    mbps = median * size / distinct / 1e6
    print(
        f"{name:28s} {n:>9,} frames in {elapsed:5.2f}s  median {median:>9,.0f} frames/s "
        f"(best {rates[-1]:,.0f})  {mbps:6.1f} MB/s",
        file=sys.stderr,
        flush=True,
    )
    return {
        "frames": n,
        "distinct": distinct,
        "passes": len(passes),
        "rejected_per_pass": rejected // len(passes),
        "seconds": round(elapsed, 3),
        "frames_per_s": round(median),
        "best_pass_frames_per_s": round(rates[-1]),
        "mean_frames_per_s": round(n / elapsed),
        "mb_per_s": round(mbps, 2),
        "mean_frame_bytes": round(size / distinct, 1),
    }


def _batches(frames: Sequence[bytes], size: int = 1000) -> list[list[bytes]]:
    size = min(size, len(frames))
    return [list(frames[i : i + size]) for i in range(0, len(frames) - size + 1, size)]


def _run_batches(name: str, frames: Sequence[bytes], seconds: float) -> dict[str, Any]:
    """``_run`` over batches: one ``decode_rows_batch`` call per 1,000 frames, figures per
    frame (a rejected frame is an item of the result, not an exception)."""
    batches = _batches(frames)
    received = [1_772_000_000_000] * 1000
    size = sum(len(f) for b in batches for f in b)
    call = lambda b: decode_rows_batch(b, received[: len(b)])  # noqa: E731
    # Equal batches, so that frames/s per pass is batches/s x the batch size.
    return _run(name, call, batches, seconds, per_item=len(batches[0]), size=size)


def _to_json(frame: bytes) -> object:
    return frame_to_json(decode_frame(frame))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per phase (default 3)")
    ap.add_argument("--frames", type=int, default=2000, help="distinct generated frames")
    ap.add_argument("--profile", action="store_true", help="cProfile the 2016 typical phase")
    args = ap.parse_args(argv)

    vectors = vector_frames()
    typical = {ed: typical_frames(ed, args.frames) for ed in (2016, 2025)}
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(max(1, 200_000 // len(typical[2016]))):
            for frame in typical[2016]:
                decode_rows(frame)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return 0

    s = args.seconds
    phases: dict[str, Any] = {
        "ceiling_envelope_2016": _run(
            "ceiling: envelope+BCC 2016", parse_envelope, typical[2016], s
        ),
        "ceiling_envelope_2025": _run(
            "ceiling: envelope+BCC 2025", parse_envelope, typical[2025], s
        ),
        "fast_typical_2016": _run("native: typical 2016", decode_rows, typical[2016], s),
        "fast_typical_2025": _run("native: typical 2025", decode_rows, typical[2025], s),
        "fast_vectors": _run("native: public vectors", decode_rows, vectors, s),
        "batch_typical_2016": _run_batches("native batch: typical 2016", typical[2016], s),
        "batch_typical_2025": _run_batches("native batch: typical 2025", typical[2025], s),
        "batch_vectors": _run_batches("native batch: public vectors", vectors, s),
    }
    for name, fn, frames in (
        ("structured_typical_2016", decode_frame, typical[2016]),
        ("json_typical_2016", _to_json, typical[2016]),
        ("json_typical_2025", _to_json, typical[2025]),
        ("json_vectors", _to_json, vectors),
        ("json_native_typical_2016", fast_frame_json, typical[2016]),
        ("json_native_typical_2025", fast_frame_json, typical[2025]),
    ):
        phases[name] = _run(name.replace("_", " ", 1), fn, frames, s)
    result = {
        "benchmark": "decode",
        "target_frames_per_s": 100_000,
        "fast_typical_2016_meets_target": phases["fast_typical_2016"]["frames_per_s"] >= 100_000,
        "fast_typical_2025_meets_target": phases["fast_typical_2025"]["frames_per_s"] >= 100_000,
        "phases": phases,
        "params": {
            "seconds_per_phase": s,
            "generated_frames_per_edition": args.frames,
            "vector_frames": len(vectors),
            "typical_frame_bytes": {
                str(ed): round(sum(map(len, fs)) / len(fs), 1) for ed, fs in typical.items()
            },
            "cells_per_frame": 96,
            "probes_per_frame": 32,
        },
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "command": "python -m loadtest.bench_decode " + " ".join(argv or sys.argv[1:]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
