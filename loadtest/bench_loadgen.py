"""The load generator's own speed and memory at scale (``devtools.sim.scale``), no broker.

    python -m loadtest.bench_loadgen [--devices 3000000] [--frames 100000] [--mix ...]

Phases, each on one core (the generator is one Python thread):
- ``steady``: ``--frames`` records from round 1 on (real-time reports, the faults, reissues
  and bad frames of the defaults; no logins), the run's normal state;
- ``logins``: ``--frames`` records of round 0 (each device's login, then its first report);
- ``file``: the steady records formatted as record-file lines (``--out``'s cost, no disk).

Memory: the process's peak RSS after the phases (``ru_maxrss``) and the tracemalloc peak of
a short steady run (``--traced`` records), which is what the generator itself holds.

A progress line per phase goes to stderr; the LAST stdout line is one JSON object with the
figures and the parameters.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from collections import Counter
from typing import Any

from devtools.sim.recordfile import format_record
from devtools.sim.scale import ScaleOptions, parse_mix, scale_messages


def _phase(name: str, o: ScaleOptions, frames: int, *, lines: bool = False) -> dict[str, Any]:
    kinds: Counter[str] = Counter()
    size = 0
    started = time.process_time()
    for msg in itertools.islice(scale_messages(o), frames):
        kinds[msg.kind] += 1
        size += len(msg.value)
        if lines:
            format_record(msg.topic, msg)
    took = time.process_time() - started
    out = {
        "frames": frames,
        "cpu_seconds": round(took, 2),
        "frames_per_s": round(frames / took),
        "bytes_per_frame": round(size / frames),
        "kinds": dict(kinds),
    }
    print(f"bench_loadgen: {name}: {out['frames_per_s']:,} frames/s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=3_000_000)
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--traced", type=int, default=3_000)
    p.add_argument("--mix", type=parse_mix, default=ScaleOptions().mix)
    args = p.parse_args(argv)
    base = ScaleOptions(devices=args.devices, mix=args.mix)
    steady = ScaleOptions(devices=args.devices, mix=args.mix, first_round=1)
    result: dict[str, Any] = {
        "devices": args.devices,
        "mix": dict(args.mix),
        "steady": _phase("steady", steady, args.frames),
        "logins": _phase("logins", base, args.frames),
        "file": _phase("file", steady, args.frames, lines=True),
    }
    tracemalloc.start()
    for _ in itertools.islice(scale_messages(steady), args.traced):
        pass
    result["traced_peak_bytes"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["machine"] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
