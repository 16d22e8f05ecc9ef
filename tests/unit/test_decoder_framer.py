"""The stream framer: whole frames from arbitrary chunking, resynchronisation on garbage, and
a report of everything skipped."""

from __future__ import annotations

import functools
import itertools
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.sim.framebuilder import TIME_HEX, build
from ingest.decoders import RawFrame, Skipped, StreamFramer
from ingest.decoders.checksum import bcc
from tests.unit.vectors_support import load_vectors

pytestmark = pytest.mark.unit

GOOD = [bytes.fromhex(v["hex"]) for v in load_vectors() if v["bcc_ok"]]


def _run(chunks: list[bytes]) -> tuple[list[RawFrame], list[Skipped], StreamFramer]:
    framer = StreamFramer()
    events: list[RawFrame | Skipped] = []
    for c in chunks:
        events += framer.feed(c)
    events += framer.close()
    frames = [e for e in events if isinstance(e, RawFrame)]
    return frames, [e for e in events if isinstance(e, Skipped)], framer


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(GOOD), max_size=12), st.data())
def test_any_chunking_gives_the_same_frames(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    got, skipped, framer = _run(chunks)
    assert [f.data for f in got] == frames
    assert skipped == [] and framer.skipped_bytes == 0
    offsets = [0, *itertools.accumulate(len(f) for f in frames)][: len(frames)]
    assert [f.offset for f in got] == offsets


def test_sticky_frames_stray_bytes_and_false_markers() -> None:
    a = build(2016, 0x07)
    b = build(2016, 0x02, TIME_HEX, "04 01 0BB8 01F4")
    # A "##" inside garbage, a stray 0x7E between frames, a frame whose BCC is broken.
    broken = bytearray(build(2025, 0x07))
    broken[-1] ^= 1
    stream = b"xx##yy" + a + b"\x7e" + bytes(broken) + b
    got, skipped, framer = _run([stream])
    assert [f.data for f in got] == [a, b]
    assert [(s.data, s.reason) for s in skipped] == [
        (b"xx##yy", "bad_length"),  # the "##" candidate's length runs past a good frame
        (b"\x7e" + bytes(broken), "bad_checksum"),
    ]
    assert framer.skipped_bytes == 6 + 1 + len(broken)
    assert skipped[1].offset == 6 + len(a)


def test_length_over_the_maximum_is_skipped_without_waiting() -> None:
    bogus = b"##" + bytes(20) + b"\xff\xff"  # N = 65535 > 65531
    good = build(2016, 0x07)
    got, skipped, _ = _run([bogus + good])
    assert [f.data for f in got] == [good]
    assert skipped[0].reason == "bad_length"


def test_a_frame_cut_at_the_end_of_the_stream_is_reported() -> None:
    good = build(2016, 0x07)
    got, skipped, _ = _run([good + good[:10]])
    assert [f.data for f in got] == [good]
    assert [(s.data, s.reason) for s in skipped] == [(good[:10], "incomplete")]


def test_memory_stays_bounded_on_endless_garbage() -> None:
    framer = StreamFramer()
    for _ in range(100):
        framer.feed(b"garbage-without-markers" * 100)
        assert len(framer._buf) <= 1  # only a possible half marker is kept
    assert framer.skipped_bytes == 100 * 2300


def test_bcc_matches_a_plain_xor() -> None:
    for frame in GOOD:
        n = len(frame) - 1
        assert bcc(frame, 2, n) == functools.reduce(operator.xor, frame[2:n], 0) == frame[n]


def test_a_false_start_does_not_hold_later_frames_back() -> None:
    # "##" then a length of ~60000: without the look-ahead the framer would sit on the good
    # frames behind it until 60 KB more arrived.
    false_start = b"##" + bytes(20) + b"\xea\x60"
    good = build(2016, 0x07)
    framer = StreamFramer()
    events = framer.feed(false_start + good + good)
    assert [e.data for e in events if isinstance(e, RawFrame)] == [good, good]
    assert [e.reason for e in events if isinstance(e, Skipped)] == ["bad_length"]


def test_marker_dense_garbage_of_one_edition_then_a_frame_of_the_other() -> None:
    # Only "##" markers in the garbage, so the search for "$$" finds nothing until the frame:
    # the framer must still report the garbage and find the 2025 frame behind it.
    frame = build(2025, 0x07)
    garbage = b"##\xfe\x00" * 600
    got, skipped, framer = _run([garbage[i : i + 97] for i in range(0, len(garbage), 97)] + [frame])
    assert [f.data for f in got] == [frame]
    assert [f.offset for f in got] == [len(garbage)]
    assert sum(len(s.data) for s in skipped) == len(garbage) == framer.skipped_bytes
