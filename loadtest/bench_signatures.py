"""The cost of verifying GB/T 32960-2025 signatures, per frame, on one core.

    python -m loadtest.bench_signatures [--frames 2000] [--passes 5]

Phases (each pass timed alone, the median pass reported, best beside it; the machine is shared):
- ``verify_frames`` (the gate's native call, GIL released) over signed 2025 real-time frames,
  RSA-2048 (PKCS#1 v1.5 + SHA-256) and SM2 (SM3, default user id), one vehicle key per frame;
- the whole vehicle batch decoder with the gate (``security.verify = every`` and
  ``first_per_session`` after the first pass) against the decoder alone, on the same frames.

Keys and signatures come from the ``openssl`` CLI (devtools/sim/signing.py). The cores
``every`` needs at 300,000 frames/s are 300,000 / (frames/s per core). Progress goes to stderr;
the LAST stdout line is one JSON object (docs/security.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nev_native

from devtools.sim.signing import RSA, SM2, SigningKey, make_key, realtime
from ingest.pipeline.adapters import decode_vehicle_batch
from ingest.pipeline.signatures import KeyCache, Policy, SignatureGate
from loadtest.bench_decode import _cpu_model

TARGET_FPS = 300_000


def _timed(fn: Callable[[], object], passes: int) -> tuple[float, float]:
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def _phase(
    name: str, algorithm: int, keys: list[SigningKey], frames: int, passes: int
) -> dict[str, Any]:
    now = int(time.time() * 1000)
    vins = [f"LBENCH{i:011d}" for i in range(len(keys))]
    values = [realtime(vins[i % len(keys)], now, keys[i % len(keys)]) for i in range(frames)]
    keyed: list[tuple[int, bytes] | None] = [
        (algorithm, keys[i % len(keys)].raw) for i in range(frames)
    ]
    statuses = nev_native.verify_frames(values, keyed)
    assert set(statuses) == {0}, f"{name}: frames did not verify"
    median, best = _timed(lambda: nev_native.verify_frames(values, keyed), passes)
    received = [now] * frames
    plain, _ = _timed(lambda: decode_vehicle_batch(values, received), passes)

    def gated(verify: str) -> float:
        cache = KeyCache(len(keys) + 1)
        for vin, k in zip(vins, keys, strict=False):
            cache.put(vin, algorithm, k.raw)
        gate = SignatureGate(decode_vehicle_batch, Policy("reject", verify, 10), cache)
        gate(values, received)  # first_per_session: the first pass verifies every vehicle
        return _timed(lambda: gate(values, received), passes)[0]

    every, first = gated("every"), gated("first_per_session")
    per_core = frames / median
    out = {
        "verify_fps_per_core": round(per_core),
        "verify_us_per_frame": round(median / frames * 1e6, 1),
        "verify_best_us_per_frame": round(best / frames * 1e6, 1),
        "decode_only_fps": round(frames / plain),
        "decode_gate_every_fps": round(frames / every),
        "decode_gate_first_per_session_fps": round(frames / first),
        "cores_for_every_at_300k": round(TARGET_FPS / per_core, 1),
    }
    print(f"{name}: {json.dumps(out)}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--vehicles", type=int, default=20, help="distinct keys among the frames")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        rsa = [make_key(Path(d), RSA, f"v{i}") for i in range(args.vehicles)]
        sm2 = [make_key(Path(d), SM2, f"v{i}") for i in range(args.vehicles)]
        result = {
            "benchmark": "bench_signatures",
            "frames": args.frames,
            "passes": args.passes,
            "cpu": _cpu_model(),
            "rsa2048": _phase("rsa2048", RSA, rsa, args.frames, args.passes),
            "sm2": _phase("sm2", SM2, sm2, args.frames, args.passes),
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
