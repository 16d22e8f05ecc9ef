"""Where one worker's time goes, per entity kind: the pipeline's steps on the benchmark frames.

    python -m loadtest.profile_kinds [--kind vehicle|charger|battery] [--devices 3334] [--per 6]

For the pipeline benchmark's frames of one kind (``devtools.sim.bench_frames``, as
``bench_pipeline --kind`` preloads them), in one process on one core: client CPU per frame of
the fast-path decode and of the default rules, then the storage writer (fence, COPY, latest
state, offsets; batches of 5,000 on a scratch database of the dev PostgreSQL) under cProfile
(process time): its wall time and client CPU in a plain pass (wall minus client CPU is time
waiting for PostgreSQL), and from a second, profiled pass on a database of its own the share
of the client CPU in the latest-state upsert of connectors and packs
(``storage.latest_kinds.upsert``) and in the COPYs, and on stderr the functions that cost
most. It explains a ``bench_pipeline`` figure, it is not one.
The LAST line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from alerts import RuleEngine, RuleSet
from devtools.sim.bench_frames import KINDS, frames_of_kind
from ingest.decoders.battery import decode_pack_rows
from ingest.decoders.charger import decode_charger_rows
from ingest.decoders.fast import decode_rows
from loadtest.bench_storage import _machine, _scratch, _service_dsn
from loadtest.bench_support import print_result
from storage import OffsetRange, PoolParams, StorageParams, StorageWriter, WriterParams, migrate
from storage.connect import connect

__all__ = ["main"]

DECODERS: Any = {
    "vehicle": decode_rows,
    "charger": decode_charger_rows,
    "battery": decode_pack_rows,
}
BATCH = 5000


def _cum_s(stats: pstats.Stats, path_part: str, name: str) -> float:
    """Cumulative seconds of the function ``name`` defined in a file whose path has
    ``path_part`` (its outermost calls only: cProfile's cumulative time)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return float(sum(v[3] for (f, _, fn), v in raw.items() if fn == name and path_part in f))


async def _database(maintenance: str, name: str) -> str:
    dsn = await _scratch(maintenance, name, create=True)
    conn = await connect(PoolParams(dsn=dsn))
    try:
        await migrate(conn, StorageParams())
    finally:
        await conn.close()
    return dsn


async def _write(dsn: str, frames: list[Any], profile: cProfile.Profile | None) -> float:
    """Wall seconds of writing ``frames`` in batches (the writer's calls profiled if asked)."""
    pool = PoolParams(dsn=dsn, min_size=1, max_size=1, statement_timeout_ms=0)
    writer = await StorageWriter.open(pool, WriterParams(consumer_group="profile"))
    started = time.monotonic()
    try:
        for i in range(0, len(frames), BATCH):
            part = frames[i : i + BATCH]
            offsets = {("profile", 0): OffsetRange(i or None, i + len(part))}
            if profile is not None:
                profile.enable()
            await writer.write_batch(part, offsets)
            if profile is not None:
                profile.disable()
    finally:
        await writer.close()
    return time.monotonic() - started


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    pg = _service_dsn("NEV_POSTGRES_DSN", "postgres")
    if pg is None:
        raise SystemExit("profile_kinds: start the dev stack (nev-ingest devstack up)")
    maintenance = urlunsplit(urlsplit(pg)._replace(path="/postgres"))
    start_ms = time.time_ns() // 1_000_000 - args.per * 10_000 - 60_000
    raw = [f for _, f in frames_of_kind(args.kind, args.devices, args.per, start_ms=start_ms)]
    received = datetime.now(UTC)
    cpu = time.process_time()
    frames = [DECODERS[args.kind](f, received) for f in raw]
    decode_s = time.process_time() - cpu
    engine = RuleEngine(RuleSet.default(), entity_kind=args.kind)
    cpu = time.process_time()
    engine.evaluate(frames)
    rules_s = time.process_time() - cpu
    # A plain pass for the figures, a profiled one (own database) for the shares.
    names = [f"profile_kinds_{os.getpid()}_{i}" for i in range(2)]
    profile = cProfile.Profile(timer=time.process_time)
    try:
        cpu = time.process_time()
        wall = await _write(await _database(maintenance, names[0]), frames, None)
        writer_cpu = time.process_time() - cpu
        await _write(await _database(maintenance, names[1]), frames, profile)
    finally:
        for name in names:
            await _scratch(maintenance, name, create=False)
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    profiled: float = stats.total_tt  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(args.top)
    sys.stderr.write(text.getvalue())
    n = len(frames)
    upsert = _cum_s(stats, "storage/latest_kinds.py", "upsert")
    copy = _cum_s(stats, "storage/loaders.py", "_copy")
    return {
        "benchmark": "profile_kinds",
        "kind": args.kind,
        "frames": n,
        "decode_cpu_us_per_frame": round(decode_s / n * 1e6, 1),
        "rules_cpu_us_per_frame": round(rules_s / n * 1e6, 1),
        "writer_frames_per_s": round(n / wall),
        "writer_client_cpu_us_per_frame": round(writer_cpu / n * 1e6, 1),
        "writer_waiting_share": round(max(0.0, 1 - writer_cpu / wall), 2),
        "writer_cpu_share_latest_upsert_kinds": round(upsert / profiled, 2),
        "writer_cpu_share_copy": round(copy / profiled, 2),
        "machine": _machine(),
        "loadavg": round(os.getloadavg()[0], 2),
        "command": " ".join(["python -m loadtest.profile_kinds", *sys.argv[1:]]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="profile_kinds", description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=KINDS, default="charger")
    p.add_argument("--devices", type=int, default=3334, help="devices of the kind (3334)")
    p.add_argument("--per", type=int, default=6, help="frames per device (6)")
    p.add_argument("--top", type=int, default=15, help="functions listed on stderr (15)")
    return print_result(_bench(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
