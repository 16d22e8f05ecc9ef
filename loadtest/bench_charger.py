"""Charger decoding: frames/s of the charger profile's fast path (``decode_charger_rows``, the
pipeline's) next to the vehicle fast path's, the structured path and the T/CEC 102 JSON
decoder, with the envelope check alone as the ceiling, all in the same run.

    .venv/bin/python -m loadtest.bench_charger --seconds 3

Each phase times every pass over its frames and reports the median pass (best in the JSON);
the last line is one JSON object (docs/performance.md, "Chargers").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson

from contract.clock import CHINA_TZ
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    ConnectorStatus,
    Output,
    VehicleDemand,
    decode_charger_frame,
    decode_charger_rows,
    decode_charger_rows_batch,
    decode_tcec,
    encode_charger_frame,
    rows_of_charger_frame,
)
from ingest.decoders.envelope import parse_envelope
from ingest.decoders.fast import decode_rows
from loadtest.bench_decode import typical_frames as vehicle_frames

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=CHINA_TZ)


def typical_frames(n: int = 500) -> list[bytes]:
    """``n`` chargers charging on one connector: status, output, vehicle/BMS and order."""
    out = []
    for i in range(n):
        cid = f"MA01H3BQ2P{i:07d}01"
        t = T0 + timedelta(seconds=i)
        blocks = (
            ConnectorStatus(cid, 3, 50, 10),
            Output(cid, 400.0 + i % 50, 120.0 + i % 30, 48.0 + i % 20 / 10, 12.345 + i, 35),
            VehicleDemand(cid, f"LSVAU2180N{i:07d}", 20 + i % 80, 410.0, 130.0),
            ChargeOrder(cid, f"MA01H3BQ2{i:018d}", 2, T0, 9.5, 4.25, 13.75),
        )
        out.append(
            encode_charger_frame(ChargerFrame(0x02, f"MA01H3BQ2P{i:07d}", time=t, blocks=blocks))
        )
    return out


def typical_pushes(n: int = 500) -> list[bytes]:
    """``n`` notification_equip_charge_status pushes (the most frequent T/CEC push)."""
    out = []
    for i in range(n):
        doc = {
            "StartChargeSeq": f"MA01H3BQ2{i:018d}",
            "StartChargeSeqStat": 2,
            "ConnectorID": f"MA01H3BQ2P{i:07d}01",
            "ConnectorStatus": 3,
            "CurrentA": 120.5, "CurrentB": 0, "CurrentC": 0,
            "VoltageA": 400.1, "VoltageB": 0, "VoltageC": 0,
            "Soc": 55.5,
            "StartTime": "2025-03-01 09:30:00",
            "EndTime": f"2025-03-01 10:{i % 60:02d}:00",
            "TotalPower": 12.345, "ElecMoney": 9.5, "SeviceMoney": 4.25, "TotalMoney": 13.75,
            "SumPeriod": 1,
            "ChargeDetails": [],
        }  # fmt: skip
        out.append(orjson.dumps(doc))
    return out


def _phase(
    name: str,
    items: list[Any],
    fn: Callable[[Any], object],
    seconds: float,
    per_item: int = 1,
) -> dict[str, float]:
    """Frames/s of ``fn`` over ``items`` (each item ``per_item`` frames: a batch)."""
    passes: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(passes) < 3:
        start = time.perf_counter()
        for x in items:
            fn(x)
        passes.append(time.perf_counter() - start)
    n = len(items) * per_item
    flat = [f for x in items for f in x] if per_item > 1 else items
    size = sum(map(len, flat)) / n
    median = n / statistics.median(passes)
    best = n / min(passes)
    sys.stderr.write(f"{name:<34} {median:>10,.0f} frames/s (best {best:,.0f}), {size:.0f} B\n")
    return {"frames_per_s": round(median), "best_frames_per_s": round(best), "bytes": round(size)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per phase")
    args = ap.parse_args(argv)
    frames = typical_frames()
    pushes = typical_pushes()
    vehicles = vehicle_frames(2016, 500)
    pushed = T0
    for f in frames:  # warm the caches (IDs, times) as a running consumer has them
        decode_charger_rows(f)
    result = {
        "ceiling_parse_envelope": _phase(
            "ceiling: parse_envelope", frames, parse_envelope, args.seconds
        ),
        "vehicle_fast_rows": _phase(
            "vehicle fast path (typical 2016)", vehicles, decode_rows, args.seconds
        ),
        "charger_rows": _phase(
            "charger fast path -> rows", frames, decode_charger_rows, args.seconds
        ),
        "charger_rows_batch": _phase(
            "charger fast path, batches of 100",
            [frames[k : k + 100] for k in range(0, len(frames), 100)],
            lambda batch: decode_charger_rows_batch(batch, [0] * len(batch)),
            args.seconds,
            per_item=100,
        ),
        "charger_rows_structured": _phase(
            "charger records -> rows",
            frames,
            lambda f: rows_of_charger_frame(decode_charger_frame(f)),
            args.seconds,
        ),
        "charger_frame": _phase(
            "charger profile -> records", frames, decode_charger_frame, args.seconds
        ),
        "tcec_charge_status": _phase(
            "T/CEC equip_charge_status -> rows",
            pushes,
            lambda d: decode_tcec(d, "notification_equip_charge_status", "MA01H3BQ2", pushed),
            args.seconds,
        ),
    }
    print(json.dumps({"bench": "charger", **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
