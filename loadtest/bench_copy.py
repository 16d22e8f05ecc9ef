"""The benchmark's "copy" ceiling: raw binary COPY of the pipeline's rows, nothing else.

The frames are read back from the preloaded topic and decoded with the fast path (neither
counts in the COPY time; the decode's and the rules' CPU per frame are reported beside it);
then, per 5,000-frame chunk, one transaction COPYs each table's rows with the storage layer's
own encoding (``storage.batch.rows_by_table`` + the COPY loader), without what the writer adds:
the offset fence and store, ``latest_state``, alerts. Only the COPY time counts.

Collections triggered by allocation are off meanwhile, as in a worker process
(``ingest/pipeline/process.py``, which collects on a timer instead, ``ingest/pipeline/lag.py``):
their passes over the thousands of decoded frames held here would land in whatever allocates
next (the decode, the COPY's encoding) and charge it for work a worker does not do there.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from alerts import RuleEngine, RuleSet
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows_batch
from loadtest.clients import fresh_consumer
from storage.batch import rows_by_table
from storage.loaders import CopyLoader

__all__ = ["copy_rows"]

CHUNK = 5000


async def copy_rows(
    env: Any,
    topic: str,
    total: int,
    dsn: str,
    progress: Callable[[str, int, int, float], None],
    cpu_us: dict[str, float],
) -> float:
    """COPY the decoded rows of ``topic`` into ``dsn``; returns frames per second of COPY time.
    Fills ``cpu_us`` with this client's CPU microseconds per frame by part."""
    consumer = fresh_consumer(env.kafka, topic, "bench-copy")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "nev, public"})
    await consumer.start()
    copy_s, copy_cpu, done, pending = 0.0, 0.0, 0, []
    # Also timed here, on the same frames: the decoder's and the default rules' CPU per frame
    # (the parts of a worker's budget that are not the database's).
    decode_cpu, rules_cpu = 0.0, 0.0
    engine = RuleEngine(RuleSet.default())
    started = time.monotonic()
    last = started
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        while done < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=CHUNK)
            cpu0 = time.process_time()
            for records in batch.values():
                # The pipeline's call: one native batch per partition's records.
                values = [r.value for r in records]
                for rows in decode_rows_batch(values, [r.timestamp for r in records]):
                    if isinstance(rows, FrameError):
                        raise SystemExit(f"bench: a preloaded frame was rejected: {rows}")
                    pending.append(rows)
            decode_cpu += time.process_time() - cpu0
            if len(pending) >= CHUNK or (pending and done + len(pending) >= total):
                cpu0 = time.process_time()
                engine.evaluate(pending)
                rules_cpu += time.process_time() - cpu0
                cpu0 = time.process_time()
                copy_s += await _copy_chunk(conn, pending)
                copy_cpu += time.process_time() - cpu0
                done += len(pending)
                pending = []
                if time.monotonic() - last >= 2:
                    last = time.monotonic()
                    progress("ceiling copy", done, total, time.monotonic() - copy_s)
    finally:
        if collecting:
            gc.enable()
            gc.collect()  # what piled up here, paid here and not by the next phase
        await consumer.stop()
        await conn.close()
    progress("ceiling copy", done, total, time.monotonic() - copy_s)
    cpu_us["copy"] = copy_cpu / done * 1e6  # the client's share: row encoding, protocol
    cpu_us["decode"] = decode_cpu / done * 1e6
    cpu_us["rules"] = rules_cpu / done * 1e6
    return done / copy_s


async def _copy_chunk(conn: Any, frames: list[Any]) -> float:
    tables = rows_by_table(frames, range(len(frames)))
    t0 = time.perf_counter()
    async with conn.transaction():
        for table, rows in tables:
            await CopyLoader._copy(conn, "nev", table.name, table, rows)
    return time.perf_counter() - t0
