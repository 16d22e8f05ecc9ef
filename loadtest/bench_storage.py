"""Storage benchmark: the batch writer against raw COPY of the same rows, on one connection.

    python -m loadtest.bench_storage [--vehicles 5000] [--per-vehicle 20] [--batch 5000]

Real GB/T 32960 frames (``devtools.sim.bench_frames``, both editions) are decoded once, untimed,
by the native path (``decode_rows_batch``: the rows carry their binary COPY tuples, which the
CopyLoader joins instead of encoding rows, so ``copy_raw`` is the native encoder's ceiling);
then every mode writes the same rows into emptied tables of a scratch database
on the dev PostgreSQL (``NEV_POSTGRES_DSN`` or the running dev stack), best of ``--repeat``
interleaved runs:

* ``copy_generic``   asyncpg ``copy_records_to_table`` for every table, the cell and probe
                     arrays as Python lists (what the naive writer does; reference only);
* ``copy_raw``       the CEILING: the writer's own encoders (hand-built int2[] stream), one
                     transaction per batch, nothing else;
* ``writer``         the full writer: fence + COPY + latest_state + offsets (dedupe=offsets),
                     latest_state merged once per ``--latest-interval-ms`` (default 5000, the
                     service's default; the last merge, ``flush_latest``, is timed too);
* ``writer_latest0`` the same with latest_state merged with every batch (interval 0);
* ``writer_staging`` the full writer with every row through staging + ON CONFLICT.

Every mode is timed as a worker process runs: automatic garbage collection off (``--gc on``:
Python's default), and the writer's partition committed before and assigned to it.

``--latest-rows N`` fills latest_state before each run (untimed) with the bench's vehicles,
older than their frames, and other vehicles up to N: merges then update rows, as in
production, instead of inserting them. ``writer_vs_writer_latest0_paired_median`` is the
interval's own gain (run r of both modes back to back: the same machine load).

Then bytes per frame on disk (heap + indexes) and, on the TimescaleDB engine when one is up
(``NEV_TEST_TIMESCALE_DSN`` or the dev stack's ``timescale``), before and after compression.
A progress line goes to stderr every few seconds; the LAST line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from contract.rows import FrameRows, PackRow, cell_voltages_mv, probe_temps_c
from ingest.decoders.errors import FrameError
from loadtest.bench_storage_ts import compression_figures
from storage import (
    Dedupe,
    OffsetRange,
    PoolParams,
    StorageParams,
    StorageWriter,
    WriterParams,
    migrate,
)
from storage.batch import rows_by_table
from storage.connect import connect
from storage.loaders import CopyLoader

__all__ = ["main"]

TABLES = ("vehicle_telemetry", "drive_motor_telemetry", "battery_pack_telemetry", "alarm_events")
MODES = ("copy_generic", "copy_raw", "writer", "writer_latest0", "writer_staging")
TP = ("bench.storage", 0)


class Progress:
    def __init__(self, every_s: float = 3.0) -> None:
        self.every_s = every_s
        self.last = time.monotonic()

    def __call__(
        self, phase: str, done: int, total: int, started: float, *, force: bool = False
    ) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        took = max(now - started, 1e-9)
        sys.stderr.write(
            f"bench_storage: {phase}: {done:,}/{total:,} frames, {done / took:,.0f} frames/s, "
            f"{took:.1f}s\n"
        )
        sys.stderr.flush()


def _machine() -> dict[str, Any]:
    cpu = ""
    mem = 0
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
        with open("/proc/meminfo") as f:
            mem = next((int(ln.split()[1]) // 1024 for ln in f if ln.startswith("MemTotal:")), 0)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_mb": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _service_dsn(env: str, service: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    from devtools.devstack import Paths, StackState
    from devtools.settings import load_dev_settings

    state = StackState.load(Paths.from_settings(load_dev_settings()).state_dir)
    running = state.running(service)
    return running.url if running is not None else None


def _frames(
    vehicles: int, per_vehicle: int, progress: Progress, label: str = "decode (untimed)"
) -> list[FrameRows]:
    from devtools.sim.bench_frames import realtime_frames
    from ingest.decoders.fast import decode_rows_batch

    start_ms = int(time.time() * 1000) - per_vehicle * 10_000 - 60_000
    received_ms = int(time.time() * 1000)
    out: list[FrameRows] = []
    total = vehicles * per_vehicle
    started = time.monotonic()
    batch: list[bytes] = []

    def flush() -> None:
        # The pipeline's call: one native call per batch; the rows carry their COPY tuples.
        for rows in decode_rows_batch(batch, [received_ms] * len(batch)):
            if isinstance(rows, FrameError):
                raise SystemExit(f"bench: a simulated frame was rejected: {rows}")
            out.append(rows)
        batch.clear()
        progress(label, len(out), total, started)

    for _, raw in realtime_frames(vehicles, per_vehicle, start_ms=start_ms):
        batch.append(raw)
        if len(batch) == 1000:
            flush()
    flush()
    return out


def _generic_packs(rows: Sequence[PackRow]) -> list[tuple[Any, ...]]:
    # what a writer does without the hand-built stream: Python lists for asyncpg to encode
    return [(*r[:7], cell_voltages_mv(r), probe_temps_c(r), *r[9:]) for r in rows]


async def _truncate(conn: Any) -> None:
    await conn.execute(
        f"TRUNCATE {', '.join(f'nev.{t}' for t in TABLES)}, nev.latest_state, "
        "nev.consumer_offsets, nev.raw_frames"
    )


async def _prefill_latest(conn: Any, batches: list[list[FrameRows]], rows: int) -> None:
    """latest_state as in production: a row per vehicle already (older than the frames, so
    every merge updates), filled up to ``rows`` with other vehicles; analysed (untimed)."""
    vins = sorted({f.vin for b in batches for f in b})
    await conn.execute(
        "INSERT INTO nev.latest_state (entity_kind, entity_id, ts, received_at, edition) "
        "SELECT 'vehicle', v, '2000-01-01', '2000-01-01', 1 FROM ("
        "  SELECT unnest($1::text[]) UNION ALL"
        "  SELECT 'FILL' || lpad(g::text, 13, '0') FROM generate_series(1, $2) g"
        ") AS t (v)",
        vins,
        max(0, rows - len(vins)),
    )
    await conn.execute("VACUUM ANALYZE nev.latest_state")


async def _copy_batches(conn: Any, batches: list[list[FrameRows]], *, generic: bool) -> None:
    loader = CopyLoader()
    for batch in batches:
        async with conn.transaction():
            for table, rows in rows_by_table(batch, range(len(batch))):
                if generic and table.name == "battery_pack_telemetry":
                    await conn.copy_records_to_table(
                        table.name,
                        records=_generic_packs(rows),
                        columns=list(table.columns),
                        schema_name="nev",
                    )
                else:
                    await loader.load(conn, "nev", table, rows, skip_conflicts=False)


async def _run_mode(
    mode: str,
    dsn: str,
    batches: list[list[FrameRows]],
    progress: Progress,
    label: str,
    latest_interval_ms: int,
    latest_rows: int = 0,
    service_gc: bool = True,
) -> tuple[float, float]:
    """Wall and client-CPU seconds to write every batch in ``mode`` (tables emptied first,
    not timed)."""
    total = sum(len(b) for b in batches)
    pool_params = PoolParams(dsn=dsn, min_size=1, max_size=1, statement_timeout_ms=0)
    dedupe = Dedupe.STAGING if mode == "writer_staging" else Dedupe.OFFSETS
    interval = latest_interval_ms if mode == "writer" else 0
    writer = await StorageWriter.open(
        pool_params,
        WriterParams(consumer_group=f"bench-{mode}", dedupe=dedupe, latest_interval_ms=interval),
    )
    try:
        async with writer.pool.acquire() as conn:
            await _truncate(conn)
            if latest_rows:
                await _prefill_latest(conn, batches, latest_rows)
            await conn.execute("CHECKPOINT")
        if not mode.startswith("copy"):
            # The partition as a worker gets it in the steady state: committed before (by a
            # previous owner: an empty batch stores its offset) and assigned (load_offsets).
            # A partition never committed nor assigned has its latest_state merged with its
            # first batch, which is a start's cost, not the writer's.
            await writer.write_batch([], {TP: OffsetRange(None, 0)})
            await writer.load_offsets([TP])
        if service_gc:
            # As a worker process runs (ingest/pipeline/process.py): no automatic collection,
            # whose full passes over the decoded frames would land in whatever allocates.
            gc.collect()
            gc.disable()
        started = time.monotonic()
        cpu = time.process_time()
        done = 0
        if mode.startswith("copy"):
            async with writer.pool.acquire() as conn:
                for batch in batches:
                    await _copy_batches(conn, [batch], generic=mode == "copy_generic")
                    done += len(batch)
                    progress(label, done, total, started)
        else:
            for batch in batches:
                result = await writer.write_batch(batch, {TP: OffsetRange(done, done + len(batch))})
                assert result.frames == len(batch), result
                done += len(batch)
                progress(label, done, total, started)
            await writer.flush_latest([TP])  # what a stop merges: part of the cost
        return time.monotonic() - started, time.process_time() - cpu
    finally:
        gc.enable()
        await writer.close()


async def _sizes(dsn: str, frames: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        out: dict[str, Any] = {"tables": {}}
        total = 0
        for t in TABLES:
            heap, index, rows = await conn.fetchrow(
                "SELECT sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)), "
                "(SELECT count(*) FROM nev." + t + ") "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = $1::regclass",
                f"nev.{t}",
            )
            heap, index = int(heap or 0), int(index or 0)
            total += heap + index
            out["tables"][t] = {
                "rows": rows,
                "heap_bytes_per_row": round(heap / rows, 1) if rows else None,
                "index_bytes_per_row": round(index / rows, 1) if rows else None,
            }
        out["bytes_per_frame"] = round(total / frames, 1)
        return out
    finally:
        await conn.close()


async def _scratch(maintenance: str, name: str, create: bool) -> str:
    conn = await asyncpg.connect(maintenance)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(maintenance)._replace(path=f"/{name}"))


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress()
    pg = _service_dsn("NEV_POSTGRES_DSN", "postgres")
    if pg is None:
        raise SystemExit(
            "bench_storage: start the dev stack (nev-ingest devstack up) or set NEV_POSTGRES_DSN"
        )
    maintenance = urlunsplit(urlsplit(pg)._replace(path="/postgres"))
    name = f"bench_storage_{os.getpid()}"
    dsn = await _scratch(maintenance, name, create=True)
    out: dict[str, Any] = {"benchmark": "storage", "machine": _machine()}
    try:
        conn = await connect(PoolParams(dsn=dsn))
        try:
            await migrate(conn, StorageParams())
            out["postgres"] = await conn.fetchval("SHOW server_version")
            out["synchronous_commit"] = await conn.fetchval("SHOW synchronous_commit")
        finally:
            await conn.close()
        frames = _frames(args.vehicles, args.per_vehicle, progress)
        batches = [frames[i : i + args.batch] for i in range(0, len(frames), args.batch)]
        rows_per_frame = {
            t.name: len(r) / len(frames) for t, r in rows_by_table(frames, range(len(frames)))
        }
        out.update(
            latest_interval_ms=args.latest_interval_ms,
            latest_rows=args.latest_rows,
            gc=args.gc,
            frames=len(frames),
            vehicles=args.vehicles,
            batch=args.batch,
            repeat=args.repeat,
            rows_per_frame={k: round(v, 3) for k, v in rows_per_frame.items()},
        )
        seconds: dict[str, list[float]] = {m: [] for m in args.modes}
        cpu: dict[str, list[float]] = {m: [] for m in args.modes}
        for r in range(args.repeat):
            for mode in args.modes:
                label = f"{mode} run {r + 1}/{args.repeat}"
                took, client = await _run_mode(
                    mode,
                    dsn,
                    batches,
                    progress,
                    label,
                    args.latest_interval_ms,
                    args.latest_rows,
                    service_gc=args.gc == "service",
                )
                seconds[mode].append(took)
                cpu[mode].append(client)
                progress(label, len(frames), len(frames), time.monotonic() - took, force=True)
        rows = sum(rows_per_frame.values())
        results: dict[str, Any] = {}
        for mode, runs in seconds.items():
            best = len(frames) / min(runs)
            client_us = 1e6 * min(cpu[mode]) / len(frames)
            results[mode] = {
                "frames_per_s": round(best),
                "frames_per_s_median": round(len(frames) / statistics.median(runs)),
                # this process's CPU per frame: the rate if the server had cores of its own
                "client_cpu_us_per_frame": round(client_us, 2),
                "client_bound_frames_per_s": round(1e6 / client_us),
                "rows_per_s": round(best * rows),
                "vehicle_rows_per_s": round(best * rows_per_frame.get("vehicle_telemetry", 0)),
            }
        out["modes"] = results
        if "writer" in results and "copy_raw" in results:
            ratio = results["writer"]["frames_per_s"] / results["copy_raw"]["frames_per_s"]
            out["writer_vs_copy_raw"] = round(ratio, 3)
            # run r of each mode ran back to back: their ratio sees the same machine load
            pairs = [c / w for w, c in zip(seconds["writer"], seconds["copy_raw"], strict=True)]
            out["writer_vs_copy_raw_paired_median"] = round(statistics.median(pairs), 3)
            out["goal_writer_ge_0_8_copy_raw"] = ratio >= 0.8
            out["goal_writer_ge_0_9_copy_raw"] = ratio >= 0.9  # issue 12
            out["goal_writer_ge_100k_frames_per_s"] = results["writer"]["frames_per_s"] >= 100_000
        if "writer_staging" in results and "writer" in results:
            out["staging_vs_offsets"] = round(
                results["writer_staging"]["frames_per_s"] / results["writer"]["frames_per_s"], 3
            )
        if "writer_latest0" in results and "copy_raw" in results:
            ratio = results["writer_latest0"]["frames_per_s"] / results["copy_raw"]["frames_per_s"]
            out["writer_latest0_vs_copy_raw"] = round(ratio, 3)
            pairs = [
                c / w for w, c in zip(seconds["writer_latest0"], seconds["copy_raw"], strict=True)
            ]
            out["writer_latest0_vs_copy_raw_paired_median"] = round(statistics.median(pairs), 3)
        if "writer_latest0" in results and "writer" in results:
            # the interval's own gain: > 1 when merging per interval beats merging per batch
            both = zip(seconds["writer"], seconds["writer_latest0"], strict=True)
            pairs = [z / w for w, z in both]
            out["writer_vs_writer_latest0_paired_median"] = round(statistics.median(pairs), 3)
        if "copy_generic" in results and "copy_raw" in results:
            out["hand_built_stream_speedup"] = round(
                results["copy_raw"]["frames_per_s"] / results["copy_generic"]["frames_per_s"], 2
            )
        out["plain"] = await _sizes(dsn, len(frames))
        ts = _service_dsn("NEV_TEST_TIMESCALE_DSN", "timescale") if args.ts_vehicles else None
        if ts is not None:
            # Compression depends on rows per VIN per compressed chunk: an hour of each of a
            # few vehicles, not seconds of many (what one day of a real fleet looks like).
            ts_frames = _frames(args.ts_vehicles, args.ts_per_vehicle, progress, "decode (ts)")
            out["timescale"] = {
                "vehicles": args.ts_vehicles,
                "per_vehicle": args.ts_per_vehicle,
                # the default sizing (1,000,000 vehicles per server) and 100,000 per server
                "fleet_1m": await compression_figures(ts, ts_frames, progress, chunk=None),
                "fleet_100k": await compression_figures(
                    ts, ts_frames, progress, chunk=timedelta(hours=1)
                ),
            }
        else:
            out["timescale"] = None
            out["timescale_note"] = "no TimescaleDB engine: nev-ingest devstack up --with timescale"
    finally:
        if not args.keep:
            await _scratch(maintenance, name, create=False)
    out["command"] = " ".join(["python -m loadtest.bench_storage", *sys.argv[1:]])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.bench_storage", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--vehicles", type=int, default=5000, help="distinct VINs (one frame each per batch)"
    )
    p.add_argument("--per-vehicle", type=int, default=20, help="frames per vehicle")
    p.add_argument("--batch", type=int, default=5000, help="frames per transaction")
    p.add_argument("--repeat", type=int, default=3, help="runs per mode, interleaved; best counts")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument(
        "--ts-vehicles", type=int, default=50, help="compression figure: vehicles (0: skip)"
    )
    p.add_argument(
        "--ts-per-vehicle", type=int, default=360, help="compression figure: frames each (10 s)"
    )
    p.add_argument(
        "--latest-interval-ms",
        type=int,
        default=5000,
        help="writer mode: latest_state merged once per this many ms (storage.latest_interval_ms)",
    )
    p.add_argument(
        "--latest-rows",
        type=int,
        default=0,
        help="latest_state rows before each run, the bench's vehicles among them (as in "
        "production: merges update); 0: empty (the first frame of each vehicle inserts)",
    )
    p.add_argument(
        "--gc",
        choices=("service", "on"),
        default="service",
        help="service: automatic garbage collection off during the timed runs, as in a worker "
        "process; on: Python's default (the writer used as a library)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = p.parse_args(argv)
    result = asyncio.run(_bench(args))
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
