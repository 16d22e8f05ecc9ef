"""What crafted input costs the native code, against honest input of the same size.

    python -m loadtest.bench_hostile [--passes 200]

Shapes that review found quadratic (docs/performance.md, "Hostile input"):
- the gateway's framer (``nev_native.frame_spans``) holding a false start (a header declaring
  65,531 bytes that never come) with a marker every 4 bytes behind it, each declaring a
  length the buffer holds and failing its BCC: the search for a complete frame behind the
  false start, run again on every read while it waits; the ceiling is the same buffer without
  markers;
- the framer on an honest read whose unfinished last frame holds a marker (the ceiling: the
  same read without it): what the fixes must not make honest traffic pay;
- the framer on false starts interleaved with small good frames (~64 KB; the ceiling: honest
  frames of the same sizes), and on markers every 4 bytes with no false start in front (the
  ceiling: the false start's ceiling above);
- the pack join of the decoder (``nev_native.bench("decode")``): a 64 KB 2016 frame of
  thousands of voltage pages and temperature entries of different pack numbers; the ceiling
  is a 64 KB frame of real cells (159 pages of 200).

Each figure is the median of ``--passes`` timed passes on one core; the ratio is crafted /
ceiling (1 would be no amplification at all). A progress line per phase goes to stderr; the
LAST stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import nev_native

from contract.rows import FrameRows
from ingest.decoders.checksum import bcc
from loadtest.bench_decode import _cpu_model

_TIME = bytes([24, 3, 1, 12, 0, 0])


def _frame(unit: bytes) -> bytes:
    head = b"##\x02\xfe" + b"LNEV0000000000001" + b"\x01" + len(unit).to_bytes(2, "big")
    f = bytearray(head + unit)
    f.append(bcc(f, 2, len(f)))
    return bytes(f)


def framer_buffers() -> tuple[bytes, bytes]:
    """(crafted, ceiling): a false start then markers every 4 bytes; the same without them."""
    head = b"##\x02\xfe" + b"A" * 17 + b"\x01" + (65_531).to_bytes(2, "big")
    return head + (b"##\x70\x00" * 16_375)[:65_500], head + b"\x00" * 65_500


def interleaved_buffers() -> tuple[bytes, bytes]:
    """(crafted, ceiling): false starts (a header declaring 65,531 bytes) each followed by a
    small good frame, ~64 KB; honest frames of the same sizes."""
    false = b"##\x02\xfe" + b"A" * 17 + b"\x01" + (65_531).to_bytes(2, "big")
    good = _frame(b"\x00" * 24)
    n = 64_000 // len(false + good)
    return (false + good) * n, _frame(b"\x00" * (len(false) - 1 + 24)) * n


def tail_buffers() -> tuple[bytes, bytes]:
    """(crafted, ceiling): ~64 KB of honest frames and the first 500 bytes of the next one,
    whose data holds a ``##`` (honest too: any byte pair may be one); the same without it."""
    honest = _frame(bytes(300)) * (64_000 // len(_frame(bytes(300))))
    data = bytearray(b"\x07" * 1000)
    data[10:12] = b"##"
    return honest + _frame(bytes(data))[:500], honest + _frame(bytes(1000))[:500]


def markers_buffer() -> bytes:
    """Markers every 4 bytes, each declaring a length the buffer holds: no false start in
    front, so each is a candidate of the scan itself (the ceiling: ``framer_buffers``')."""
    return (b"##\x70\x00" * 16_375)[:65_500]


def join_frames() -> tuple[bytes, bytes]:
    """(crafted, ceiling): 3,289 voltage pages of pack 1 and 10,826 temperature entries of
    pack 2 (no pair joins: every entry is scanned); 159 pages of 200 real cells."""
    volt = b"\x08\xfd" + (b"\x01" + bytes.fromhex("1000271000010001") + b"\x00") * 253
    temps = [b"\x09" + bytes([n]) + b"\x02\x00\x00" * n for n in [253] * 42 + [200]]
    crafted = _frame(_TIME + volt * 13 + b"".join(temps))
    page = b"\x01" + bytes.fromhex("1000271000c80001") + b"\xc8" + b"\x0c\xe4" * 200
    return crafted, _frame(_TIME + b"\x08\x9f" + page * 159)


def _median_us(run: Callable[[], object], passes: int) -> float:
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passes", type=int, default=200, help="timed passes per input")
    args = ap.parse_args(argv)
    n = args.passes
    out: dict[str, object] = {"passes": n, "cpu": _cpu_model()}

    crafted, ceiling = framer_buffers()
    assert nev_native.frame_spans(crafted, False) == (0, [])  # held: the false start waits
    framer = _median_us(lambda: nev_native.frame_spans(crafted, False), n)
    framer_ceiling = _median_us(lambda: nev_native.frame_spans(ceiling, False), n)
    print(f"framer: {framer:.1f} µs per read held, {framer_ceiling:.1f} µs without markers",
          file=sys.stderr)  # fmt: skip
    out |= {"framer_crafted_us": round(framer, 1), "framer_ceiling_us": round(framer_ceiling, 1)}
    out |= {"framer_ratio": round(framer / framer_ceiling, 2), "framer_bytes": len(crafted)}

    crafted, ceiling = interleaved_buffers()
    inter = _median_us(lambda: nev_native.frame_spans(crafted, False), n)
    inter_ceiling = _median_us(lambda: nev_native.frame_spans(ceiling, False), n)
    markers = _median_us(lambda: nev_native.frame_spans(markers_buffer(), False), n)
    print(f"framer, interleaved false starts: {inter:.1f} µs per read ({inter_ceiling:.1f} "
          f"honest); markers alone: {markers:.1f} µs", file=sys.stderr)  # fmt: skip
    out |= {
        "interleaved_crafted_us": round(inter, 1),
        "interleaved_ceiling_us": round(inter_ceiling, 1),
    }
    out |= {"interleaved_ratio": round(inter / inter_ceiling, 2), "interleaved_bytes": len(crafted)}
    out |= {"markers_us": round(markers, 1), "markers_ratio": round(markers / framer_ceiling, 2)}

    crafted, ceiling = tail_buffers()
    tail = _median_us(lambda: nev_native.frame_spans(crafted, False), n)
    tail_ceiling = _median_us(lambda: nev_native.frame_spans(ceiling, False), n)
    print(f"framer, a marker in the unfinished last frame of an honest read: {tail:.1f} µs "
          f"({tail_ceiling:.1f} without it)", file=sys.stderr)  # fmt: skip
    out |= {"tail_crafted_us": round(tail, 1), "tail_ceiling_us": round(tail_ceiling, 1)}
    out |= {"tail_ratio": round(tail / tail_ceiling, 2)}

    crafted, ceiling = join_frames()
    decoded = nev_native.decode_vehicle_batch([crafted], [None])[0]
    assert isinstance(decoded, FrameRows), decoded  # both decoders accept it (whole)
    rows = len(decoded.packs)
    join = _median_us(lambda: nev_native.bench("decode", [crafted], 1), n)
    join_ceiling = _median_us(lambda: nev_native.bench("decode", [ceiling], 1), n)
    print(f"pack join: {join:.1f} µs per decode of {rows} rows, {join_ceiling:.1f} µs for real "
          "cells", file=sys.stderr)  # fmt: skip
    out |= {"join_crafted_us": round(join, 1), "join_ceiling_us": round(join_ceiling, 1)}
    out |= {"join_ratio": round(join / join_ceiling, 2), "join_pack_rows": rows}
    out |= {"join_bytes": [len(crafted), len(ceiling)]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
