"""Fuzz the decoders: random and mutated frames; nothing but FrameError may escape.

    python -m loadtest.fuzz_decode [--count 1000000] [--seed 1] [--vectors PATH]
    python -m loadtest.fuzz_decode --profile charger|battery [--count 100000]

``--profile vehicle`` (default) fuzzes the structured vehicle decoder; ``charger`` and
``battery`` fuzz both decoders of that profile, the fast path (the pipeline's) and the
structured one, and count any input they decide differently as a crash too
(``loadtest.fuzz_profiles``).

Inputs, in rotation: mutations of seed frames (the public vectors plus frames built with the
encoder: a typical ~330-byte real-time frame of each edition, logins, query replies, 2025
signed frames), half of them "sealed" (length and BCC recomputed, so the mutation reaches the
block decoders instead of stopping at the checksum); random data units in a valid envelope;
and plain random bytes. Every decoded frame is also serialised to the JSON contract.

A progress line (count, rate, crashes) goes to stderr every few seconds; the last stdout
line is one JSON object with the figures. Crashing inputs are written as hex to
``--crashes`` and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from contract.clock import CHINA_TZ
from devtools.sim.envelope import seal
from ingest.decoders import (
    Alarm,
    CellTemperatures,
    CellVoltages,
    DriveMotors,
    Extremes,
    Frame,
    FrameError,
    Login,
    Motor,
    Param,
    ParamList,
    Position,
    Signature,
    TemperaturePack,
    Vehicle,
    VoltagePack,
    decode_frame,
    encode_frame,
    frame_to_json,
)
from ingest.decoders.fields import Record
from loadtest.fuzz_profiles import CHECKS, SEEDS
from loadtest.vectors import vectors_path

DEFAULT_VECTORS = vectors_path()
T0 = datetime(2025, 10, 27, 20, 2, 2, tzinfo=CHINA_TZ)


def seed_frames(vectors: Path) -> list[bytes]:
    """The public vectors (good BCC) and encoder-built frames of both editions."""
    seeds = []
    if vectors.exists():
        for line in vectors.read_text(encoding="utf-8").splitlines():
            vec = json.loads(line)
            if vec["bcc_ok"]:
                seeds.append(bytes.fromhex(vec["hex"]))
    for edition in (2016, 2025):
        seeds.append(encode_frame(typical_frame(edition)))
        seeds.append(
            encode_frame(
                Frame(
                    edition,
                    0x01,
                    vin="LSFD03205HC001180",
                    time=T0,
                    body=Login(1, "89860616020046379629", ("A" * 24, "B" * 24), 2, 24, None)
                    if edition == 2016
                    else Login(1, "89860616020046379629", ("A" * 24, "B" * 24), None, None, (2,)),
                )
            )
        )
        params = (Param(1, 6000), Param(2, 10), Param(4, 7), Param(5, "nev.com"), Param(9, 30))
        seeds.append(
            encode_frame(
                Frame(edition, 0x80, 0x01, "LSFD03205HC001180", time=T0, body=ParamList(params))
            )
        )
    return seeds


def typical_frame(edition: int) -> Frame:
    """About 330 bytes: vehicle, motor, position, extremes (2016), alarm, 96 cells, 32 probes."""
    cells = tuple(3.2 + (i % 7) / 1000 for i in range(96))
    temps = tuple(25 + i % 5 for i in range(32))
    motor = Motor(
        1,
        1,
        35,
        4000,
        10.0,
        40,
        670.0 if edition == 2016 else None,
        10.0 if edition == 2016 else None,
    )
    blocks: list[Record] = [
        Vehicle(
            1,
            3,
            1,
            37.5,
            12345.0,
            670.0,
            -0.9,
            75,
            1,
            0x2E,
            6500,
            50 if edition == 2016 else None,
            0 if edition == 2016 else None,
        ),
        DriveMotors((motor,)),
        Position(True, 121.427974, 31.152738, None if edition == 2016 else 2, 0),
        Alarm(0, 0, (), (), (), (), None if edition == 2016 else ()),
        CellVoltages((VoltagePack(1, 670.0, -0.9, 96, 1, cells),)),
        CellTemperatures((TemperaturePack(1, 32, temps),)),
    ]
    if edition == 2016:
        blocks.insert(3, Extremes(1, 2, 3.206, 1, 1, 3.2, 1, 1, 29, 1, 2, 25))
    sig = Signature(0x02, bytes(range(256)), b"") if edition == 2025 else None
    return Frame(
        edition, 0x02, vin="LSFD03205HC001180", time=T0, blocks=tuple(blocks), signature=sig
    )


def mutate(rnd: random.Random, frame: bytes, other: bytes) -> bytes:
    buf = bytearray(frame)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(7)
        at = rnd.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[at] ^= 1 << rnd.randrange(8)
        elif op == 1 and buf:
            buf[at] = rnd.choice((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, rnd.randrange(256)))
        elif op == 2:
            buf[at:at] = rnd.randbytes(rnd.randint(1, 16))
        elif op == 3 and buf:
            del buf[at : at + rnd.randint(1, 16)]
        elif op == 4:
            del buf[at:]
        elif op == 5:
            cut = rnd.randrange(len(other) + 1)
            buf[at:] = other[cut:]  # splice two frames
        elif buf:
            n = rnd.randint(1, 32)
            buf[at:at] = buf[at : at + n]  # repeat a region (duplicated blocks)
    return bytes(buf)


def random_unit(rnd: random.Random, ident: bytes = b"LSFD03205HC001180") -> bytes:
    start = rnd.choice((b"##", b"$$"))
    cmd = rnd.choice(
        (
            0x01,
            0x02,
            0x03,
            0x04,
            0x05,
            0x06,
            0x07,
            0x08,
            0x09,
            0x0A,
            0x0B,
            0x80,
            0x81,
            0x82,
            0xC0,
            rnd.randrange(256),
        )
    )
    head = start + bytes((cmd, rnd.choice((0xFE, 0x01)))) + ident
    head += bytes((rnd.choice((1, 1, 1, 3)), 0, 0))
    unit = bytes((rnd.randrange(26), rnd.randint(1, 12), rnd.randint(1, 28), 1, 2, 3))
    unit += rnd.randbytes(rnd.randint(0, 400))
    return seal(head + unit)


def _check_vehicle(data: bytes) -> str:
    """The structured vehicle decoder and its JSON view on one input: the outcome."""
    try:
        frame = decode_frame(data)
    except FrameError as exc:
        return f"rejected:{exc.reason}"
    frame_to_json(frame)
    return "partial" if frame.partial else "decoded"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS)
    ap.add_argument("--crashes", type=Path, default=Path("fuzz-crashes.hex"))
    ap.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines")
    ap.add_argument("--profile", choices=["vehicle", *SEEDS], default="vehicle")
    args = ap.parse_args(argv)

    rnd = random.Random(args.seed)
    if args.profile == "vehicle":
        seeds = seed_frames(args.vectors)
        check: Callable[[bytes], str] = _check_vehicle
    else:
        seeds = SEEDS[args.profile]()
        check = CHECKS[args.profile]
    ident = seeds[-1][4:21]  # a header ID of the profile for the random data units
    outcomes: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    crashes: list[str] = []
    makers: list[tuple[str, Callable[[], bytes]]] = [
        ("mutated", lambda: mutate(rnd, rnd.choice(seeds), rnd.choice(seeds))),
        ("mutated_sealed", lambda: seal(mutate(rnd, rnd.choice(seeds), rnd.choice(seeds)))),
        ("mutated_sealed", lambda: seal(mutate(rnd, rnd.choice(seeds), rnd.choice(seeds)))),
        ("random_unit", lambda: random_unit(rnd, ident)),
        ("random_bytes", lambda: rnd.randbytes(rnd.randint(0, 120))),
    ]
    started = last = time.perf_counter()
    total_bytes = 0
    for i in range(args.count):
        source, make = makers[i % len(makers)]
        data = make()
        sources[source] += 1
        total_bytes += len(data)
        try:
            outcomes[check(data)] += 1
        except Exception as exc:
            outcomes["crash"] += 1
            crashes.append(f"{type(exc).__name__}: {exc} {data.hex()}")
        now = time.perf_counter()
        if now - last >= args.progress:
            last = now
            rate = (i + 1) / (now - started)
            print(
                f"fuzz: {i + 1:,}/{args.count:,} frames, {rate:,.0f}/s, "
                f"{outcomes['crash']} crashes",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - started
    if crashes:
        args.crashes.write_text("\n".join(crashes) + "\n")
        print(f"fuzz: {len(crashes)} crashing inputs written to {args.crashes}", file=sys.stderr)
    result = {
        "benchmark": "fuzz_decode",
        "profile": args.profile,
        "frames": args.count,
        "crashes": outcomes["crash"],
        "decoded": outcomes["decoded"],
        "partial": outcomes["partial"],
        "rejected": {k.split(":", 1)[1]: v for k, v in sorted(outcomes.items()) if ":" in k},
        "sources": dict(sources),
        "seed_frames": len(seeds),
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        "frames_per_s": round(args.count / elapsed),
        "mean_bytes": round(total_bytes / max(args.count, 1), 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(result))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
