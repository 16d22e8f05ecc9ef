"""Storage of chargers and packs: the batch writer's frames/s per kind, and bytes per row.

    python -m loadtest.bench_storage_kinds [--connectors 2000] [--packs 2000] [--per-entity 10]

Charger frames (one connector each: status, output, vehicle/BMS; a quarter of the
connectors charging with an order block, ``--sparse`` 1 % with a fault block) and standalone
pack frames (a login, then state, site, 96 cells, 32 probes, alarm; 1 % alarming) are built
with the profiles' encoders and decoded by the real decoders, once, untimed. Then, on a
scratch database of the dev PostgreSQL (``NEV_POSTGRES_DSN`` or the running dev stack), the
full writer (fence + COPY + latest_state + offsets) writes each kind's frames in batches into
emptied tables, best of ``--repeat`` interleaved runs; then heap and index bytes per row of
every table. On the TimescaleDB engine when one is up (``NEV_TEST_TIMESCALE_DSN`` or the dev
stack's ``timescale``): index bytes per row of each hypertable, the figures of
storage/sizing.py (PGlite: sizes are PostgreSQL's own, its speed is not measured). A progress
line goes to stderr; the LAST line of stdout is one JSON object (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from contract.clock import CHINA_TZ
from ingest.decoders.battery import (
    PackAlarm,
    PackCells,
    PackFrame,
    PackLogin,
    PackProbes,
    PackState,
    Site,
    decode_pack_rows,
    encode_pack_frame,
)
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    ConnectorStatus,
    Faults,
    Output,
    VehicleDemand,
    decode_charger_rows,
    encode_charger_frame,
)
from ingest.decoders.fields import Record
from ingest.decoders.pack_code import encode_date_code
from loadtest.bench_storage import Progress, _machine, _scratch, _service_dsn
from storage import OffsetRange, PoolParams, StorageParams, StorageWriter, WriterParams, migrate
from storage.batch import Decoded
from storage.connect import connect
from storage.tables import CHARGER_TABLES, PACK_TABLES

__all__ = ["charger_frames", "main", "pack_frames"]

KINDS = {
    "charger": [t.name for t in CHARGER_TABLES],
    "battery": [t.name for t in PACK_TABLES],
}
_MADE = encode_date_code(date(2023, 3, 15))
HYPERTABLES = {k: [t for t in v if t != "charger_connectors"] for k, v in KINDS.items()}


def charger_frames(connectors: int, per: int, start: datetime, sparse: float = 0.01) -> list[bytes]:
    """``per`` frames of each connector, 10 s apart, interleaved as a fleet sends them; a
    ``sparse`` share of the connectors reports a fault in every frame."""
    out = []
    for k in range(per):
        t = start + timedelta(seconds=10 * k)
        for i in range(connectors):
            cid = f"MA01H3BQ2P{i:07d}01"
            blocks: list[Record] = [
                ConnectorStatus(cid, 3 if i % 4 == 0 else 1, 50, 10),
                Output(cid, 400.0 + i % 50, 120.0 + k % 30, 48.0 + i % 20 / 10, 1.5 * k, 35),
                VehicleDemand(cid, f"LSVAU2180N{i:07d}", 20 + k % 80, 410.0, 130.0),
            ]
            if i % 4 == 0:
                blocks.append(ChargeOrder(cid, f"MA01H3BQ2{i:018d}", 2, start, 9.5, 4.25, 13.75))
            if i % 100 < 100 * sparse:
                blocks.append(Faults(cid, (3000 + k,)))
            frame = ChargerFrame(0x02, f"MA01H3BQ2P{i:07d}", time=t, blocks=tuple(blocks))
            out.append(encode_charger_frame(frame))
    return out


def pack_frames(packs: int, per: int, start: datetime, sparse: float = 0.01) -> list[bytes]:
    """A login of each standalone pack, then ``per`` frames of each, 10 s apart, interleaved;
    a ``sparse`` share of the packs alarms in every frame."""
    login = PackLogin(1, "89860000000000000001", None, 150.0, 96.0, 355.2, 96, 32)
    out = [
        encode_pack_frame(PackFrame(2016, 0x01, ident=c[7:], time=start, pack_code=c, body=login))
        for c in (_pack_code(i) for i in range(packs))
    ]
    for k in range(per):
        t = start + timedelta(seconds=10 * k)
        for i in range(packs):
            code = _pack_code(i)
            level = 3.3 + (i % 80) / 100
            cells = tuple(round(level + ((i + c + k) % 9 - 4) / 1000, 3) for c in range(96))
            probes = tuple(20 + (i + p) % 15 for p in range(32))
            alarming = i % 100 < 100 * sparse
            alarm = PackAlarm(1, 1 << 3, (17,)) if alarming else PackAlarm(0, 0, ())
            blocks = (
                PackState(2, 1, 10 + (i + k) % 90, 92, 480 + i % 7, 355.2, -80.5, 5000),
                Site("SWAP-SH-0001", i % 40),
                PackCells(cells),
                PackProbes(probes),
                alarm,
            )
            frame = PackFrame(2016, 0x02, ident=code[7:], time=t, pack_code=code, blocks=blocks)
            out.append(encode_pack_frame(frame))
    return out


def _pack_code(i: int) -> str:
    return f"CATPEA1LINE0{i % 100:02d}{_MADE}{i:07d}"


def decoded(args: argparse.Namespace, start: datetime) -> dict[str, list[Decoded]]:
    received = datetime.now(UTC)
    chargers: list[Decoded] = [
        decode_charger_rows(f, received)
        for f in charger_frames(args.connectors, args.per_entity, start, args.sparse)
    ]
    packs: list[Decoded] = [
        decode_pack_rows(f, received)
        for f in pack_frames(args.packs, args.per_entity, start, args.sparse)
    ]
    return {"charger": chargers, "battery": packs}


async def _write(dsn: str, kind: str, frames: list[Decoded], batch: int) -> tuple[float, float]:
    """Wall and client-CPU seconds of writing ``frames`` (tables emptied first, untimed)."""
    pool = PoolParams(dsn=dsn, min_size=1, max_size=1, statement_timeout_ms=0)
    writer = await StorageWriter.open(pool, WriterParams(consumer_group=f"bench-{kind}"))
    tp = (f"bench.{kind}", 0)
    try:
        async with writer.pool.acquire() as conn:
            await conn.execute(f"TRUNCATE {', '.join(KINDS[kind])}, latest_state, consumer_offsets")
            await conn.execute("CHECKPOINT")
        started, cpu = time.monotonic(), time.process_time()
        for i in range(0, len(frames), batch):
            part = frames[i : i + batch]
            result = await writer.write_batch(part, {tp: OffsetRange(i or None, i + len(part))})
            assert result.frames == len(part) and not result.rejected, result
        return time.monotonic() - started, time.process_time() - cpu
    finally:
        await writer.close()


async def _plain_sizes(dsn: str) -> dict[str, Any]:
    conn = await connect(PoolParams(dsn=dsn))
    try:
        out: dict[str, Any] = {}
        for table in (t for tables in KINDS.values() for t in tables):
            rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
            heap, index = await conn.fetchrow(
                "SELECT sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)) FROM pg_class c "
                "WHERE c.oid = $1::regclass OR c.oid IN "
                "(SELECT inhrelid FROM pg_inherits WHERE inhparent = $1::regclass)",
                f"nev.{table}",
            )
            out[table] = {
                "rows": rows,
                "heap_bytes_per_row": round(int(heap or 0) / rows, 1) if rows else None,
                "index_bytes_per_row": round(int(index or 0) / rows, 1) if rows else None,
            }
        return out
    finally:
        await conn.close()


async def _timescale_index(dsn: str, frames: dict[str, list[Decoded]]) -> dict[str, Any]:
    """Index bytes per row of each new hypertable on the TimescaleDB engine (PGlite)."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    params = PoolParams(dsn=dsn, schema=schema, statement_timeout_ms=0)
    conn = await connect(params)
    try:
        await migrate(conn, StorageParams(schema=schema))
    finally:
        await conn.close()
    writer = await StorageWriter.open(params, WriterParams(consumer_group="bench", schema=schema))
    out: dict[str, Any] = {}
    try:
        for kind, part in frames.items():
            tp = (f"bench.{kind}", 0)
            for i in range(0, len(part), 2000):
                chunk = part[i : i + 2000]
                await writer.write_batch(chunk, {tp: OffsetRange(i or None, i + len(chunk))})
        async with writer.pool.acquire() as c:
            for table in (t for tables in HYPERTABLES.values() for t in tables):
                rows = await c.fetchval(f"SELECT count(*) FROM {schema}.{table}")
                index = await c.fetchval(
                    "SELECT index_bytes FROM hypertable_detailed_size($1::regclass)",
                    f"{schema}.{table}",
                )
                out[table] = {
                    "rows": rows,
                    "index_bytes_per_row": round(int(index) / rows, 1) if rows else None,
                }
            await c.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await writer.close()
    return out


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress()
    pg = _service_dsn("NEV_POSTGRES_DSN", "postgres")
    if pg is None:
        raise SystemExit(
            "bench_storage_kinds: start the dev stack (nev-ingest devstack up) or set "
            "NEV_POSTGRES_DSN"
        )
    maintenance = urlunsplit(urlsplit(pg)._replace(path="/postgres"))
    dsn = await _scratch(maintenance, f"bench_kinds_{os.getpid()}", create=True)
    out: dict[str, Any] = {"benchmark": "storage_kinds", "machine": _machine()}
    try:
        conn = await connect(PoolParams(dsn=dsn))
        try:
            await migrate(conn, StorageParams())
            out["postgres"] = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        # within the partitions maintenance made (8 days back): an hour ago
        start = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=1)
        frames = decoded(args, start)
        out.update(per_entity=args.per_entity, batch=args.batch, repeat=args.repeat)
        seconds: dict[str, list[float]] = {k: [] for k in frames}
        cpu: dict[str, list[float]] = {k: [] for k in frames}
        for r in range(args.repeat):
            for kind, part in frames.items():
                took, client = await _write(dsn, kind, part, args.batch)
                seconds[kind].append(took)
                cpu[kind].append(client)
                progress(f"{kind} run {r + 1}", len(part), len(part), time.monotonic() - took)
        out["writer"] = {
            kind: {
                "frames": len(frames[kind]),
                "frames_per_s": round(len(frames[kind]) / min(runs)),
                "frames_per_s_median": round(len(frames[kind]) / statistics.median(runs)),
                "client_cpu_us_per_frame": round(1e6 * min(cpu[kind]) / len(frames[kind]), 2),
            }
            for kind, runs in seconds.items()
        }
        out["plain"] = await _plain_sizes(dsn)
        ts = _service_dsn("NEV_TEST_TIMESCALE_DSN", "timescale") if args.ts_entities else None
        if ts is not None:
            small = argparse.Namespace(
                connectors=args.ts_entities,
                packs=args.ts_entities,
                per_entity=args.per_entity,
                sparse=args.sparse,
            )
            out["timescale"] = await _timescale_index(ts, decoded(small, start))
        else:
            out["timescale"] = None
    finally:
        await _scratch(maintenance, f"bench_kinds_{os.getpid()}", create=False)
    out["command"] = " ".join(["python -m loadtest.bench_storage_kinds", *sys.argv[1:]])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.bench_storage_kinds", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--connectors", type=int, default=2000, help="charger connectors")
    p.add_argument("--packs", type=int, default=2000, help="standalone packs")
    p.add_argument("--per-entity", type=int, default=10, help="frames per connector / pack")
    p.add_argument("--batch", type=int, default=5000, help="frames per transaction")
    p.add_argument("--repeat", type=int, default=3, help="runs per kind, interleaved; best counts")
    p.add_argument(
        "--ts-entities", type=int, default=200, help="TimescaleDB figure: entities (0: skip)"
    )
    p.add_argument(
        "--sparse",
        type=float,
        default=0.01,
        help="share of connectors / packs with a fault / alarm in every frame (1: all, to "
        "measure those tables' bytes per row)",
    )
    args = p.parse_args(argv)
    result = asyncio.run(_bench(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
