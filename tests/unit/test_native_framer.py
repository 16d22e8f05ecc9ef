"""The native stream framer (native/src/framer.rs behind ``NativeStreamFramer``) agrees with the
reference ``StreamFramer`` event for event: the same frames, skipped runs, offsets and reasons,
for any stream and any split of it into reads, at close too."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.sim import gbt_session as s
from devtools.sim.framebuilder import TIME_HEX, build
from ingest.decoders.framer import NativeStreamFramer, RawFrame, Skipped, StreamFramer
from tests.unit.vectors_support import load_vectors

pytestmark = pytest.mark.unit

VECTORS = [bytes.fromhex(v["hex"]) for v in load_vectors()]
GOOD = [bytes.fromhex(v["hex"]) for v in load_vectors() if v["bcc_ok"]]
VIN = "LTESTVIN000000001"
NOW = 1_767_225_600_000

Event = RawFrame | Skipped


def _both(chunks: list[bytes]) -> tuple[list[Event], list[Event], NativeStreamFramer]:
    ref, fast = StreamFramer(), NativeStreamFramer()
    a: list[Event] = []
    b: list[Event] = []
    for c in chunks:
        a += ref.feed(c)
        b += fast.feed(c)
    a += ref.close()
    b += fast.close()
    assert (fast.frames, fast.skipped_bytes) == (ref.frames, ref.skipped_bytes)
    return a, b, fast


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(min(c, len(stream)) for c in cuts)
    return [stream[x:y] for x, y in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def _false_start(length: int) -> bytes:
    return b"##\x02\xfe" + b"X" * 17 + b"\x01" + length.to_bytes(2, "big")


# Pieces a hostile or broken sender produces: good frames of both editions, frames with a
# flipped byte or cut short, stray bytes, marker-dense garbage, false starts whose declared
# length is small, large, or over the 65531 cap.
_PIECE = st.one_of(
    st.sampled_from(VECTORS),
    st.tuples(st.sampled_from(GOOD), st.integers(0, 400), st.integers(1, 255)).map(
        lambda t: (
            t[0][: t[1] % len(t[0])]
            + bytes([t[0][t[1] % len(t[0])] ^ t[2]])
            + t[0][t[1] % len(t[0]) + 1 :]
        )
    ),
    st.tuples(st.sampled_from(GOOD), st.integers(1, 400)).map(lambda t: t[0][: t[1]]),
    st.binary(max_size=40),
    st.lists(st.sampled_from([b"#", b"$", b"##", b"$$", b"\x7e", b"\x00"]), max_size=30).map(
        b"".join
    ),
    st.sampled_from([0, 5, 300, 65_531, 65_532, 65_535]).map(_false_start),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECE, max_size=14), st.lists(st.integers(0, 20_000), max_size=12))
def test_any_stream_any_split_gives_the_same_events(pieces: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(pieces)
    ref, fast, _ = _both(_split(stream, cuts))
    assert fast == ref


def test_the_golden_vectors_with_garbage_between_at_random_splits() -> None:
    rng = random.Random(32960)
    for _ in range(200):
        parts = []
        for v in rng.sample(VECTORS, k=min(8, len(VECTORS))):
            parts.append(rng.randbytes(rng.randrange(0, 6)))
            parts.append(v)
        stream = b"".join(parts)
        cuts = [rng.randrange(len(stream)) for _ in range(rng.randrange(0, 10))]
        ref, fast, framer = _both(_split(stream, cuts))
        assert fast == ref
        assert framer.frames == sum(isinstance(e, RawFrame) for e in ref) > 0


def test_every_byte_its_own_read() -> None:
    a = build(2016, 0x07)
    b = build(2025, 0x02, TIME_HEX, "04 01 0BB8 01F4")
    stream = b"xx##yy" + a + b"\x7e#" + b + _false_start(65_000) + a + b"$"
    ref, fast, _ = _both([stream[i : i + 1] for i in range(len(stream))])
    assert fast == ref
    assert [e.data for e in fast if isinstance(e, RawFrame)] == [a, b, a]


def test_a_frame_whose_bcc_is_a_hash_ends_a_read_and_the_next_frame_is_whole() -> None:
    """The storm's regression (tests/unit/test_loadgen_gateway.py), on the native framer: a
    trailing BCC "#" kept as a half marker must not eat the next frame's "##"."""
    first = next(f for i in range(10_000) if (f := s.vehicle_logout(VIN, 2016, NOW, i))[-1] == 0x23)
    second = s.vehicle_login(VIN, 2016, NOW)
    stream = first + second + first
    for cut in range(1, len(stream)):
        ref, fast, _ = _both([stream[:cut], stream[cut:]])
        assert fast == ref, cut
        assert [e.data for e in fast if isinstance(e, RawFrame)] == [first, second, first]


def test_feed_frames_gives_the_frames_bytes_and_the_same_skips() -> None:
    a = build(2016, 0x07)
    broken = bytearray(build(2025, 0x07))
    broken[-1] ^= 1
    stream = b"xx##yy" + a + b"\x7e" + bytes(broken) + a
    framer = NativeStreamFramer()
    got = framer.feed_frames(stream[:-5]) + framer.feed_frames(stream[-5:])
    assert got == [
        Skipped(b"xx##yy", 0, "bad_length"),
        a,
        Skipped(b"\x7e" + bytes(broken), 6 + len(a), "bad_checksum"),
        a,
    ]
    assert (framer.frames, framer.skipped_bytes) == (2, 7 + len(broken))


def test_memory_stays_bounded_on_endless_garbage() -> None:
    framer = NativeStreamFramer()
    fed = framed = 0
    for _ in range(100):
        chunk = b"#" * 1000 + _false_start(65_000)
        # ("##" + 22 "#" declares 8995 bytes, and 9017 bytes of "#" XOR to "#": a frame.)
        framed += sum(len(e.data) for e in framer.feed(chunk) if isinstance(e, RawFrame))
        fed += len(chunk)
        # What is held back (neither skipped nor framed) is at most one candidate frame.
        assert fed - framer.skipped_bytes - framed <= 65_556
