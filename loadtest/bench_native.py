"""Issue 12's decode goals in one run: the native hot path and `nev-ingest decode` vs rtm-con.

    python -m loadtest.bench_native [--seconds 2] [--frames 2000] [--cli-frames 20000]

Phases, each on one core (the machine is shared: each pass is timed alone and the median pass
is reported, best pass beside it, as in bench_decode):
- native, pure: ``nev_native.bench`` runs decode, decode + COPY encode, and the JSON writer
  over typical 2016 (and 2025) frames in Rust, GIL released, no Python object built: the
  floor of the batch call;
- native, batch call: ``decode_rows_batch`` on batches of 1,000 frames (the rows as Python
  objects, plus the COPY tuples), and the single-frame ``decode_rows``;
- rtm-con (``rtm_con.msg.parse``, the maintained Python peer, GPL, never a dependency of
  this project): installed into a scratch venv under ~/.cache/nev-ingest/ at benchmark time
  and run there on the same frames; if it cannot be installed the output says so;
- the CLI: ``python -m ingest decode FILE > /dev/null`` as a whole process on a hex file of
  ``--cli-frames`` frames (startup included), against rtm-con parsing the same frames.

Ratios: native decode+encode vs rtm-con (goal >= 50x), CLI vs rtm-con (goal >= 15x), on the
typical 2016 frames and on the real real-time frames of the public vectors. A progress line per
phase goes to stderr; the LAST stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nev_native

from ingest.decoders.fast import decode_rows, decode_rows_batch
from loadtest.bench_decode import _cpu_model, typical_frames, vector_frames

RTM_CON = "rtm-con==1.0.4"
# rtm_con's __init__ imports its Excel export, which fails without openpyxl (a NameError, not
# the ImportError it guards against), so the peer is unusable without it.
RTM_EXTRA = "openpyxl"
RTM_VENV = Path.home() / ".cache" / "nev-ingest" / "rtm-con-venv"
BATCH = 1000
GOAL_NATIVE_FPS = 500_000
GOAL_NATIVE_X = 50
GOAL_CLI_X = 15

# Run inside rtm-con's venv: parse every frame (hex lines on stdin) for `seconds`, print the
# median and best pass rates as JSON.
_RTM_SCRIPT = """
import json, sys, time
from rtm_con import msg
frames = [bytes.fromhex(x) for x in sys.stdin.read().split()]
seconds = float(sys.argv[1])
rates, failed, spent = [], 0, 0.0
while spent < seconds:
    t0 = time.perf_counter()
    for f in frames:
        try:
            msg.parse(f)
        except Exception:
            failed += 1
    took = time.perf_counter() - t0
    spent += took
    rates.append(len(frames) / took)
rates.sort()
print(json.dumps({"frames_per_s": round(rates[len(rates) // 2]), "best": round(rates[-1]),
                  "passes": len(rates), "failed_per_pass": failed // len(rates)}))
"""


def _say(name: str, median: float, best: float, extra: str = "") -> None:
    print(
        f"bench: {name:34s} median {median:>12,.0f} frames/s (best {best:,.0f}) {extra}",
        file=sys.stderr,
        flush=True,
    )


def _passes(run: Callable[[], float], count: int, seconds: float) -> dict[str, Any]:
    """Repeat ``run`` (one pass over ``count`` frames; returns its seconds) for ``seconds``."""
    rates: list[float] = []
    spent = 0.0
    while spent < seconds or len(rates) < 3:
        took = run()
        spent += took
        rates.append(count / took)
    rates.sort()
    median = rates[len(rates) // 2]
    return {
        "frames_per_s": round(median),
        "best_pass_frames_per_s": round(rates[-1]),
        "us_per_frame": round(1e6 / median, 3),
        "passes": len(rates),
    }


def native_pure(what: str, frames: list[bytes], seconds: float) -> dict[str, Any]:
    """``nev_native.bench``: passes of 20 x the frames in Rust (one pass is ~0.1 s)."""
    reps = 20
    out = _passes(lambda: nev_native.bench(what, frames, reps), reps * len(frames), seconds)
    _say(f"native pure {what}", out["frames_per_s"], out["best_pass_frames_per_s"])
    return out


def native_batch(frames: list[bytes], seconds: float) -> dict[str, Any]:
    received = [1_772_000_000_000] * BATCH
    batches = [frames[i : i + BATCH] for i in range(0, len(frames), BATCH)]

    def one() -> float:
        t0 = time.perf_counter()
        for b in batches:
            decode_rows_batch(b, received[: len(b)])
        return time.perf_counter() - t0

    out = _passes(one, len(frames), seconds)
    _say("native decode_rows_batch (objects)", out["frames_per_s"], out["best_pass_frames_per_s"])
    return out


def native_single(frames: list[bytes], seconds: float) -> dict[str, Any]:
    def one() -> float:
        t0 = time.perf_counter()
        for f in frames:
            decode_rows(f)
        return time.perf_counter() - t0

    out = _passes(one, len(frames), seconds)
    _say("native decode_rows (one frame)", out["frames_per_s"], out["best_pass_frames_per_s"])
    return out


def rtm_python() -> tuple[Path | None, str]:
    """The scratch venv's python with rtm-con, installing it on first use; or why not."""
    py = RTM_VENV / "bin" / "python"
    check = [str(py), "-c", "import rtm_con"]
    if py.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return py, ""
    try:
        venv.create(RTM_VENV, with_pip=True, clear=True)
        pip = [str(py), "-m", "pip", "install", "-q", RTM_CON, RTM_EXTRA]
        done = subprocess.run(pip, capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"rtm-con could not be installed: {exc}"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"rtm-con could not be installed ({RTM_CON}): {tail}"
    return py, ""


def rtm_parse(py: Path, frames: Sequence[bytes], seconds: float, name: str) -> dict[str, Any]:
    hexes = "\n".join(f.hex() for f in frames)
    done = subprocess.run(
        [str(py), "-c", _RTM_SCRIPT, str(seconds)],
        input=hexes,
        capture_output=True,
        text=True,
        check=True,
    )
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    _say(f"rtm-con parse {name}", out["frames_per_s"], out["best"])
    return out


def cli(frames: Sequence[bytes], count: int, runs: int = 3) -> dict[str, Any]:
    """``python -m ingest decode FILE`` on ``count`` frames (cycled), whole process: wall and
    CPU time (the child's user + sys) per run. PYTHONUNBUFFERED is dropped for the child, so
    stdout is block-buffered as for anyone who runs the command (unbuffered, every JSON line
    is a write system call)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.hex"
        lines = [frames[i % len(frames)].hex() for i in range(count)]
        path.write_text("\n".join(lines) + "\n")
        walls, cpus = [], []
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "ingest", "decode", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                check=False,
            )
            walls.append(count / (time.perf_counter() - t0))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            cpus.append(count / cpu)
            if done.returncode not in (0, 1):
                raise SystemExit(f"bench: nev-ingest decode failed: {done.stderr.decode()[-300:]}")
    walls.sort()
    cpus.sort()
    out = {
        "frames": count,
        "frames_per_s": round(walls[len(walls) // 2]),
        "best": round(walls[-1]),
        "cpu_frames_per_s": round(cpus[len(cpus) // 2]),
    }
    extra = f"CPU: {out['cpu_frames_per_s']:,} frames per CPU second"
    _say(f"nev-ingest decode CLI ({count:,} lines)", out["frames_per_s"], out["best"], extra)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per phase (default 2)")
    ap.add_argument("--frames", type=int, default=2000, help="distinct typical frames")
    ap.add_argument("--cli-frames", type=int, default=20_000, help="lines of the CLI's file")
    ap.add_argument("--no-peer", action="store_true", help="skip rtm-con (no install, no ratios)")
    args = ap.parse_args(argv)
    s = args.seconds
    typical = {ed: typical_frames(ed, args.frames) for ed in (2016, 2025)}
    real = [f for f in vector_frames() if f[2] in (2, 3) and f[3] == 0xFE]
    load_before = os.getloadavg()[0]

    phases: dict[str, Any] = {}
    for ed in (2016, 2025):
        for what in ("decode", "decode+encode", "json"):
            phases[f"native_pure_{what}_{ed}"] = native_pure(what, typical[ed], s)
    phases["native_batch_2016"] = native_batch(typical[2016], s)
    phases["native_batch_2025"] = native_batch(typical[2025], s)
    phases["native_single_2016"] = native_single(typical[2016], s)
    runs = 3 if args.cli_frames >= 1000 else 1
    phases["cli_typical_2016"] = cli(typical[2016], args.cli_frames, runs)
    phases["cli_real_vectors"] = cli(real, args.cli_frames, runs)

    py, why = (None, "skipped (--no-peer)") if args.no_peer else rtm_python()
    ratios: dict[str, Any] = {}
    if py is not None:
        rtm_typ = phases["rtm_con_typical_2016"] = rtm_parse(py, typical[2016][:500], s, "2016")
        rtm_real = phases["rtm_con_real_vectors"] = rtm_parse(py, real, s, "real vectors")
        pure = phases["native_pure_decode+encode_2016"]["frames_per_s"]
        ratios = {
            "native_decode_encode_vs_rtm_con_2016": round(pure / rtm_typ["frames_per_s"], 1),
            "native_batch_objects_vs_rtm_con_2016": round(
                phases["native_batch_2016"]["frames_per_s"] / rtm_typ["frames_per_s"], 1
            ),
            "cli_vs_rtm_con_2016": round(
                phases["cli_typical_2016"]["frames_per_s"] / rtm_typ["frames_per_s"], 1
            ),
            "cli_cpu_vs_rtm_con_2016": round(
                phases["cli_typical_2016"]["cpu_frames_per_s"] / rtm_typ["frames_per_s"], 1
            ),
            "cli_vs_rtm_con_real_vectors": round(
                phases["cli_real_vectors"]["frames_per_s"] / rtm_real["frames_per_s"], 1
            ),
        }
    pure_fps = phases["native_pure_decode+encode_2016"]["frames_per_s"]
    result = {
        "benchmark": "native",
        "goals": {
            "native_decode_encode_2016_frames_per_s": GOAL_NATIVE_FPS,
            "native_vs_rtm_con_x": GOAL_NATIVE_X,
            "cli_vs_rtm_con_x": GOAL_CLI_X,
        },
        "native_decode_encode_2016_meets_goal": pure_fps >= GOAL_NATIVE_FPS,
        "native_vs_rtm_con_meets_goal": (
            ratios["native_decode_encode_vs_rtm_con_2016"] >= GOAL_NATIVE_X if ratios else None
        ),
        "cli_vs_rtm_con_meets_goal": (
            ratios["cli_vs_rtm_con_2016"] >= GOAL_CLI_X if ratios else None
        ),
        "ratios": ratios,
        "rtm_con": RTM_CON if py is not None else why,
        "phases": phases,
        "params": {
            "seconds_per_phase": s,
            "typical_frames_per_edition": args.frames,
            "typical_frame_bytes": {
                str(ed): round(sum(map(len, fs)) / len(fs), 1) for ed, fs in typical.items()
            },
            "real_vector_frames": len(real),
            "real_vector_frame_bytes": round(sum(map(len, real)) / len(real), 1),
            "batch": BATCH,
            "cli_frames": args.cli_frames,
        },
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "command": "python -m loadtest.bench_native " + " ".join(argv or sys.argv[1:]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
