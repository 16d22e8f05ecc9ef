"""The native JSON of ``nev-ingest decode`` is the reference JSON, byte for byte.

``nev_native.vehicle_json(frame)`` writes the JSON of a real-time / reissue command packet
itself (native/src/vehicle/json.rs); the reference is ``orjson.dumps(frame_to_dict(
decode_frame(frame)))`` (ingest/decoders/jsonview.py). For every input the native function
either gives exactly the reference's bytes or ``None`` (the CLI then runs the reference);
``None`` is allowed only for frames the reference rejects (a miscount after a stopped walk
included) and frames that are not plain real-time / reissue command packets. Inputs: the
public vectors, simulated fleet frames of both editions, Hypothesis frames of every block type,
byte mutations of them and miscounted blocks.
"""

from __future__ import annotations

import binascii
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nev_native
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from devtools.sim.bench_frames import realtime_frames
from devtools.sim.framebuilder import TIME_HEX, build
from ingest.decoders import (
    Frame,
    FrameError,
    decode_frame,
    encode_frame,
    error_to_dict,
    frame_to_dict,
)
from ingest.decoders.checksum import bcc
from ingest.decoders.fast import decode_rows
from tests.unit import strategies as s
from tests.unit.frame_mutations import mutate, reseal
from tests.unit.vectors_support import load_vectors

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(data: bytes) -> str:
    """The native JSON equals the reference's, or the native side declined a frame it may
    decline; returns what happened (a Hypothesis event)."""
    native = nev_native.vehicle_json(data)
    try:
        frame = decode_frame(data)
    except FrameError as exc:
        assert native is None, f"the reference rejects ({exc}) but native wrote JSON"
        return f"rejected {exc.reason}"
    if native is None:
        plain = frame.command in (0x02, 0x03) and not frame.is_response and frame.encryption == 0x01
        assert not plain, f"native declined a plain frame: {data.hex()}"
        return "left to the reference"
    assert native == orjson.dumps(frame_to_dict(frame)), data.hex()
    return "partial" if frame.partial else "native"


def test_every_vector_is_the_reference_json() -> None:
    outcomes = Counter(assert_same(binascii.unhexlify(v["hex"])) for v in load_vectors())
    # The vectors hold real real-time frames of both editions: the native path takes them.
    assert outcomes["native"] >= 20, outcomes


def test_simulated_fleet_frames_are_the_reference_json() -> None:
    # Both editions by the fleet's share, every template of a simulated vehicle.
    frames = [f for _, f in realtime_frames(40, 3, start_ms=1_772_000_000_000)]
    assert {f[:2] for f in frames} == {b"##", b"$$"}
    assert Counter(assert_same(f) for f in frames) == Counter({"native": len(frames)})


@SETTINGS
@given(s.realtime_frame(2016) | s.realtime_frame(2025))
def test_generated_realtime_frames_are_the_reference_json(frame: Frame) -> None:
    event(assert_same(encode_frame(frame)))


@SETTINGS
@given(s.any_frame())
def test_other_commands_are_left_to_the_reference(frame: Frame) -> None:
    event(assert_same(encode_frame(frame)))


@SETTINGS
@given(s.realtime_frame(2016) | s.realtime_frame(2025), st.data())
def test_mutated_frames_are_the_reference_json_or_left_to_it(
    frame: Frame, data: st.DataObject
) -> None:
    # Mostly the data unit (what reaches the walk), sometimes the header too.
    first = data.draw(st.sampled_from([24, 24, 24, 0]), label="first")
    event(assert_same(mutate(encode_frame(frame), data, first=first)))


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([b"##", b"$$"]), st.sampled_from([2, 3]))
def test_random_data_units_are_the_reference_json_or_left_to_it(
    unit: bytes, start: bytes, command: int
) -> None:
    unit = bytes([25, 3, 1, 12, 0, 0]) + unit  # a valid time, so that the walk is reached
    head = start + bytes([command, 0xFE]) + b"LSVAU2180N2183294" + b"\x01"
    body = head + len(unit).to_bytes(2, "big") + unit
    event(assert_same(body + bytes([bcc(body, 2, len(body))])))


@pytest.mark.parametrize(
    ("start", "block"),
    [(b"##", bytes.fromhex("040000000000")), (b"$$", bytes.fromhex("800000"))],  # engine, custom
)
@pytest.mark.parametrize("blocks", [64, 65])
def test_the_block_limit_holds_for_the_json_too(start: bytes, block: bytes, blocks: int) -> None:
    # Up to the limit the native JSON is the reference's; one block more, the reference
    # rejects the frame (over_limit) and native leaves it to it, as the rows path does.
    unit = bytes([25, 3, 1, 12, 0, 0]) + block * blocks
    body = start + bytes([2, 0xFE]) + b"LSVAU2180N2183294" + b"\x01"
    body += len(unit).to_bytes(2, "big") + unit
    want = "native" if blocks == 64 else "rejected over_limit"
    assert assert_same(body + bytes([bcc(body, 2, len(body))])) == want


def test_the_decode_cli_prints_the_reference_json(tmp_path: Path) -> None:
    frames = [binascii.unhexlify(v["hex"]) for v in load_vectors()]
    frames += [f for _, f in realtime_frames(5, 2, start_ms=1_772_000_000_000)]
    path = tmp_path / "frames.hex"
    path.write_text("".join(f"{f.hex()}\n" for f in frames))
    want = []
    for number, data in enumerate(frames, 1):
        try:
            want.append(orjson.dumps(frame_to_dict(decode_frame(data))))
        except FrameError as exc:
            want.append(orjson.dumps({**error_to_dict(exc), "source": f"{path}:{number}"}))
    for pretty in ([], ["--pretty"]):
        done = subprocess.run(
            [sys.executable, "-m", "ingest", "decode", *pretty, str(path)],
            capture_output=True,
            check=False,
        )
        assert done.returncode == 1, done.stderr  # the vectors hold rejected frames
        if pretty:  # the reference path, indented by orjson
            option = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
            assert done.stdout == b"".join(
                orjson.dumps(orjson.loads(w), option=option) for w in want
            )
        else:
            assert done.stdout.splitlines() == want


@SETTINGS
@given(s.realtime_frame(2016) | s.realtime_frame(2025), st.data())
def test_miscounted_blocks_are_left_to_the_reference(frame: Frame, data: st.DataObject) -> None:
    # A count byte of a motor / pack block raised or lowered (the length and BCC fixed): the
    # walk stops, and the reference's miscount check decides between a partial frame (the
    # native JSON) and a count_mismatch reject (left to it).
    raw = bytearray(encode_frame(frame))
    counted = {2016: (0x02, 0x08, 0x09), 2025: (0x02, 0x07, 0x08)}[frame.edition]
    spots = [i for i in range(30, len(raw) - 2) if raw[i] in counted and 0 < raw[i + 1] < 0xFE]
    if spots:
        at = data.draw(st.sampled_from(spots), label="at") + 1
        raw[at] = max(0, min(0xFD, raw[at] + data.draw(st.sampled_from([-1, 1]), label="by")))
    event(assert_same(reseal(raw)))


def test_the_decode_cli_binary_capture_prints_the_reference_json(tmp_path: Path) -> None:
    frames = [f for _, f in realtime_frames(6, 2, start_ms=1_772_000_000_000)]
    path = tmp_path / "capture.bin"
    path.write_bytes(b"\x00junk".join(frames))  # stray bytes between frames: no failure
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "decode", "--binary", str(path)],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        orjson.dumps(frame_to_dict(decode_frame(f))) for f in frames
    ]


@pytest.mark.parametrize(
    ("edition", "position"),
    [(2016, "06 00000000 00000000"), (2025, "06 01 00000000 00000000")],  # west and south
)
def test_a_zero_west_or_south_coordinate_is_positive_zero_everywhere(
    edition: int, position: str
) -> None:
    # A zero coordinate has no hemisphere: 0.0 in the reference, the native JSON and the
    # native rows alike (-0.0 would be stored and printed as -0, and ``==`` cannot tell).
    data = build(edition, 0x02, TIME_HEX, "05", position)
    (block,) = frame_to_dict(decode_frame(data))["blocks"]
    native = orjson.loads(nev_native.vehicle_json(data) or b"null")
    vehicle = decode_rows(data).vehicle
    assert vehicle is not None
    for lon, lat in (
        (block["longitude"], block["latitude"]),
        (native["blocks"][0]["longitude"], native["blocks"][0]["latitude"]),
        (vehicle.longitude, vehicle.latitude),
    ):
        assert lon == lat == 0.0 and lon is not None and lat is not None
        assert math.copysign(1.0, lon) == math.copysign(1.0, lat) == 1.0
    assert_same(data)
    # The hemisphere bits stay in the status byte: the frame re-encodes byte for byte.
    assert encode_frame(decode_frame(data)) == data
