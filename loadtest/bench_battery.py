"""Battery-pack profile throughput: frames/s of the fast path (``decode_pack_rows``).

    python -m loadtest.bench_battery [--seconds 3] [--packs 500]

Phases, each timed on one core for ``--seconds`` (median pass, best in brackets):
- ceiling: ``parse_envelope`` alone (header checks + BCC), the floor every path pays;
- the vehicle fast path (``decode_rows``) over typical 2016 real-time frames (bench_decode's:
  ~330 bytes, 96 cells, 32 probes), for comparison in the same run;
- fast path over typical pack real-time frames: state, site, 96 cells, 32 probes, alarm (no
  faults), one frame per pack, ``--packs`` packs (2016 envelope; the 2025 one adds nothing
  unless signed);
- the structured decoder (``decode_pack_frame``) over the same frames.

The LAST stdout line is one JSON object with the figures and the parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from contract.clock import CHINA_TZ
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackFrame,
    PackProbes,
    PackState,
    Site,
    decode_pack_frame,
    decode_pack_rows,
    decode_pack_rows_batch,
    encode_pack_frame,
)
from ingest.decoders.envelope import parse_envelope
from ingest.decoders.fast import decode_rows
from ingest.decoders.pack_code import encode_date_code
from loadtest.bench_decode import typical_frames as vehicle_frames


def typical_frames(packs: int, seed: int = 7) -> list[bytes]:
    """One real-time frame per pack, as a swap-station pack reports it."""
    rng = random.Random(seed)
    t0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=CHINA_TZ)
    out = []
    for i in range(packs):
        made = date(2022, 1, 1) + timedelta(days=rng.randrange(1000))
        code = f"CATPEA1LINE0{i % 100:02d}{encode_date_code(made)}{i:07d}"
        level = rng.uniform(3.2, 4.15)
        cells = tuple(round(level + rng.uniform(-0.01, 0.01), 3) for _ in range(96))
        probes = tuple(rng.randint(20, 35) for _ in range(32))
        frame = PackFrame(
            2016,
            0x02,
            ident=code[7:],
            time=t0 + timedelta(seconds=i),
            pack_code=code,
            blocks=(
                PackState(2, 1, rng.randint(10, 100), 92, 480, 355.2, -80.5, 5000),
                Site("SWAP-SH-0001", i % 40),
                PackCells(cells),
                PackProbes(probes),
                PackAlarm(0, 0, ()),
            ),
        )
        out.append(encode_pack_frame(frame))
    return out


def _time(fn: Callable[[bytes], Any], frames: Sequence[bytes], seconds: float) -> dict[str, Any]:
    passes = []
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        for f in frames:
            fn(f)
        passes.append(len(frames) / (time.perf_counter() - start))
        if time.perf_counter() > deadline and len(passes) >= 3:
            break
    size = sum(map(len, frames)) / len(frames)
    median = statistics.median(passes)
    return {
        "frames_per_s": round(median),
        "best_frames_per_s": round(max(passes)),
        "mb_per_s": round(median * size / 1e6, 1),
        "passes": len(passes),
    }


def _time_batch(frames: Sequence[bytes], seconds: float) -> dict[str, Any]:
    """``decode_pack_rows_batch`` over all frames in one call per pass (the pipeline's form)."""
    received = [1_772_323_201_000] * len(frames)
    result = _time(lambda _: decode_pack_rows_batch(frames, received), [b""], seconds)
    for key in ("frames_per_s", "best_frames_per_s"):
        result[key] *= len(frames)
    result["mb_per_s"] = round(result["frames_per_s"] * len(frames[0]) / 1e6, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--packs", type=int, default=500)
    args = ap.parse_args(argv)
    frames = typical_frames(args.packs)
    for f in frames:  # warm the caches (IDs, codes, times) as a running consumer has them
        decode_pack_rows(f)
    vehicles = vehicle_frames(2016, args.packs)
    results = {}
    for name, fn, items in (
        ("ceiling_parse_envelope", parse_envelope, frames),
        ("vehicle_fast_decode_rows", decode_rows, vehicles),
        ("fast_decode_pack_rows", decode_pack_rows, frames),
        ("structured_decode_pack_frame", decode_pack_frame, frames),
    ):
        results[name] = _time(fn, items, args.seconds)
        print(f"{name}: {results[name]}", file=sys.stderr)
    results["fast_decode_pack_rows_batch"] = _time_batch(frames, args.seconds)
    print(f"fast_decode_pack_rows_batch: {results['fast_decode_pack_rows_batch']}", file=sys.stderr)
    report = {
        "benchmark": "bench_battery",
        "frame_bytes": len(frames[0]),
        "packs": args.packs,
        "seconds": args.seconds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg()[0],
        **results,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
