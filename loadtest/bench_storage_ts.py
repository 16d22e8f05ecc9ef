"""The TimescaleDB half of loadtest/bench_storage.py: bytes per frame before and after
compression, on the TimescaleDB engine of the dev stack (PGlite-TimescaleDB: sizes are
PostgreSQL's own, speeds are not representative, so nothing here is timed)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from contract.rows import FrameRows
from storage import (
    OffsetRange,
    PoolParams,
    StorageParams,
    StorageWriter,
    TimescaleParams,
    WriterParams,
    migrate,
)
from storage.connect import connect
from storage.policies import RECOMPRESS_PROC

__all__ = ["compression_figures"]

BUSY = ("vehicle_telemetry", "drive_motor_telemetry", "battery_pack_telemetry")
TP = ("bench.storage", 0)


async def compression_figures(
    dsn: str,
    frames: list[FrameRows],
    progress: Callable[[str, int, int, float], None],
    *,
    chunk: timedelta | None,
) -> dict[str, Any]:
    """Bytes per frame of the busy hypertables on the TimescaleDB engine: before compression,
    after compressing every chunk (frames moved 10 days back, as the policy would find them;
    the roll-up merges the chunks of a day into one), and after the recompression job has
    re-segmented the merged chunks (decompress + compress: segments of a whole hour per VIN
    instead of one per source chunk). ``chunk`` overrides the busy tables' chunk interval
    (None: the default fleet arithmetic, 5 minutes for 1,000,000 vehicles)."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    params = PoolParams(dsn=dsn, schema=schema, statement_timeout_ms=0)
    busy = BUSY
    overrides = dict.fromkeys(busy, chunk) if chunk is not None else {}
    storage = StorageParams(schema=schema, timescale=TimescaleParams(chunk_overrides=overrides))
    conn = await connect(params)
    try:
        await migrate(conn, storage)
    finally:
        await conn.close()
    shift = timedelta(days=10)
    moved = []
    for f in frames:
        v = f.vehicle
        if v is None:
            continue
        ts = v.ts - shift
        moved.append(
            FrameRows(
                edition=f.edition,
                command=f.command,
                vin=f.vin,
                ts_ms=None,
                vehicle=v._replace(ts=ts),
                motors=[m._replace(ts=ts) for m in f.motors],
                packs=[p._replace(ts=ts) for p in f.packs],
            )
        )
    writer = await StorageWriter.open(params, WriterParams(consumer_group="bench", schema=schema))

    async def sizes(c: Any, what: str = "hypertable_size") -> dict[str, int]:
        sql = (
            "SELECT hypertable_size($1::regclass)"
            if what == "hypertable_size"
            else "SELECT index_bytes FROM hypertable_detailed_size($1::regclass)"
        )
        return {t: int(await c.fetchval(sql, f"{schema}.{t}")) for t in busy}

    try:
        started = time.monotonic()
        for i in range(0, len(moved), 2000):
            part = moved[i : i + 2000]
            await writer.write_batch(part, {TP: OffsetRange(i or None, i + len(part))})
            progress("timescale load (PGlite)", i + len(part), len(moved), started)
        async with writer.pool.acquire() as c:
            chunks = await c.fetchval(
                "SELECT count(*) FROM show_chunks($1::regclass)", f"{schema}.vehicle_telemetry"
            )
            before, index = await sizes(c), await sizes(c, "index")
            for t in busy:
                await c.execute(
                    "SELECT compress_chunk(ch, if_not_compressed => true) "
                    "FROM show_chunks($1::regclass) ch",
                    f"{schema}.{t}",
                )
            after = await sizes(c)
            # what the service does: the recompression job (migrations/0004_recompress)
            job = await c.fetchval(
                "SELECT job_id FROM timescaledb_information.jobs "
                "WHERE proc_schema = $1 AND proc_name = $2",
                schema,
                RECOMPRESS_PROC,
            )
            await c.execute(f"CALL run_job({int(job)})")
            recompressed = await sizes(c)
            await c.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await writer.close()
    n = len(moved)

    def per_frame(d: dict[str, int]) -> dict[str, float]:
        return {t: round(b / n, 1) for t, b in d.items()}

    return {
        "frames": n,
        "chunk_interval_s": int(
            storage.timescale.chunk_intervals()["vehicle_telemetry"].total_seconds()
        ),
        "chunks_before": chunks,
        "bytes_per_frame_before": round(sum(before.values()) / n, 1),
        "bytes_per_frame_after": round(sum(after.values()) / n, 1),
        "bytes_per_frame_recompressed": round(sum(recompressed.values()) / n, 1),
        "ratio": round(sum(before.values()) / max(1, sum(after.values())), 2),
        "ratio_recompressed": round(sum(before.values()) / max(1, sum(recompressed.values())), 2),
        "by_table_before": per_frame(before),
        "by_table_after": per_frame(after),
        "by_table_recompressed": per_frame(recompressed),
        "index_bytes_per_row_before": per_frame(index),
    }
