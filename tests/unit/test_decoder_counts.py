"""Motor and pack counts that disagree with the data (ingest/decoders/counts.py).

A count larger than the entries sent made the walk read the next block's bytes as more
motors / packs: the frame was stored as partial with invented rows. Now, when a walk stops and
a smaller count lets the rest of the data unit read completely, both decoders reject the frame
with ``count_mismatch`` at the count byte; a stop that no count explains stays partial.
"""

from __future__ import annotations

import pytest

from devtools.sim.framebuilder import TIME_HEX, build
from ingest.decoders import FrameError, decode_frame
from ingest.decoders.counts import MAX_TRIES, entry_bounds, find_miscount
from ingest.decoders.fast import decode_rows

pytestmark = pytest.mark.unit

COUNT_AT = 24 + 6 + 1  # the count byte of a counted block that comes first after the time

# 2016 pieces (Tables 10-19, B.5-B.8)
MOTOR_16 = "01 03 01 4E20 4E20 41 1B58 2710"  # one drive motor, 12 bytes
POSITION_16 = "05 00 006ACFC0 0249F000"
EXTREMES_16 = "06 01 01 0CE4 01 02 0CE0 01 01 41 01 02 40"
ALARM_16 = "07 00 00000000 00 00 00 00"
PAGE_16 = "01 1B58 2710 0002 0001 02 0CE4 0CE0"  # one voltage page, 2 cells
PROBES = "01 0002 41 40"  # one temperature entry, 2 probes
# 2025 pieces (Tables 10-27)
MOTOR_25 = "01 03 29 7D00 00030D40 4A"  # one drive motor, 10 bytes
POSITION_25 = "05 00 02 006ACFC0 0249F000"
ALARM_25 = "06 00 00000000 00 00 00 00 00"
PACK_25 = "01 1BE2 7546 0002 0CE4 0CE0"  # one pack, 2 cells
SIGNATURE = "FF 02 0002 AABB 0000"


def rejected(frame: bytes) -> FrameError:
    """The error of both decoders, which must agree on reason and offset."""
    with pytest.raises(FrameError) as structured:
        decode_frame(frame)
    with pytest.raises(FrameError) as fast:
        decode_rows(frame)
    assert (fast.value.reason, fast.value.offset) == (
        structured.value.reason,
        structured.value.offset,
    )
    return structured.value


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(
            build(2016, 0x02, TIME_HEX, "02 02" + MOTOR_16, POSITION_16, EXTREMES_16, ALARM_16),
            id="2016_motors_2_of_1",
        ),
        pytest.param(
            build(2016, 0x02, TIME_HEX, "02 03" + MOTOR_16 * 2, POSITION_16, EXTREMES_16),
            id="2016_motors_3_of_2",
        ),
        pytest.param(
            build(2016, 0x02, TIME_HEX, "08 02" + PAGE_16, "09 01" + PROBES, POSITION_16),
            id="2016_ress_voltages_2_of_1",
        ),
        pytest.param(
            build(2016, 0x02, TIME_HEX, "09 03" + PROBES, POSITION_16, EXTREMES_16, ALARM_16),
            id="2016_ress_temperatures_3_of_1",
        ),
        pytest.param(
            build(2016, 0x02, TIME_HEX, "02 02" + MOTOR_16),
            id="2016_motors_overrun_the_unit",
        ),
        pytest.param(
            build(2025, 0x02, TIME_HEX, "02 02" + MOTOR_25, POSITION_25, ALARM_25, SIGNATURE),
            id="2025_motors_2_of_1",
        ),
        pytest.param(
            build(
                2025, 0x02, TIME_HEX, "07 02" + PACK_25, "08 01" + PROBES, POSITION_25, SIGNATURE
            ),
            id="2025_cell_voltages_2_of_1",
        ),
        pytest.param(
            build(2025, 0x03, TIME_HEX, "08 02" + PROBES, POSITION_25, ALARM_25, SIGNATURE),
            id="2025_temperatures_2_of_1_reissue",
        ),
    ],
)
def test_a_count_larger_than_the_entries_is_rejected(frame: bytes) -> None:
    err = rejected(frame)
    assert (err.reason, err.offset) == ("count_mismatch", COUNT_AT)
    assert "line up after" in err.detail


def test_the_invented_motor_is_gone() -> None:
    # The case of the issue: count 2, one motor, then a position block. The old walk read the
    # position block as motor 5 (state 0) and kept it in a partial frame.
    frame = build(2016, 0x02, TIME_HEX, "02 02" + MOTOR_16, POSITION_16, EXTREMES_16, ALARM_16)
    assert "count 2, but the blocks after it line up after 1 entries" in rejected(frame).detail
    fixed = bytearray(frame)
    fixed[COUNT_AT] = 1
    fixed[-1] ^= 2 ^ 1  # the BCC follows the count byte
    rows = decode_rows(bytes(fixed))
    assert not rows.partial and [m.seq for m in rows.motors] == [1]
    assert rows.vehicle is not None and rows.vehicle.longitude == 7.0


def test_the_miscounted_block_need_not_be_the_last_before_the_stop() -> None:
    frame = build(2016, 0x02, TIME_HEX, "02 02" + MOTOR_16, "09 01" + PROBES, POSITION_16)
    assert rejected(frame).offset == COUNT_AT


def test_a_right_count_before_an_unknown_block_stays_partial() -> None:
    # A vendor block of undefined length (§3.12) after correct counts: keep what was decoded.
    tail = "0D 0010 0100 0200 3300 4400 5500 6600 7700 8800"
    frame = build(2016, 0x02, TIME_HEX, "02 01" + MOTOR_16, "09 01" + PROBES, tail)
    rows = decode_rows(frame)
    assert rows.partial and [m.seq for m in rows.motors] == [1] and len(rows.packs) == 1
    assert decode_frame(frame).tail_reason == "unknown_type"


def test_a_response_echoing_a_miscounted_unit_keeps_it_opaque() -> None:
    # Responses carry no rows: their data is kept as a tail with the reason, not rejected.
    unit = ("02 02" + MOTOR_16, POSITION_16, EXTREMES_16)
    frame = decode_frame(build(2016, 0x02, TIME_HEX, *unit, response=0x01))
    assert frame.tail_reason == "count_mismatch" and frame.blocks == ()


def test_entry_bounds_stop_at_the_unit_end() -> None:
    raw = bytes.fromhex("02 03" + MOTOR_16 * 2)
    assert entry_bounds(raw, 0, len(raw), 2016) == [2, 14, 26]
    assert entry_bounds(raw, 0, 20, 2016) == [2, 14]
    assert entry_bounds(bytes.fromhex("02 FF"), 0, 2, 2016) == []  # a sentinel count


def test_the_search_is_bounded() -> None:
    # Many counted blocks before an unknown type: at most MAX_TRIES walks, then partial. (The
    # tail is long, so that no misaligned walk can jump over it to the end by chance.)
    blocks = ["09 02" + PROBES * 2] * (MAX_TRIES + 5)
    frame = build(2016, 0x02, TIME_HEX, *blocks, "0D" * 64)
    rows = decode_rows(frame)
    assert rows.partial and len(rows.packs) == 2 * (MAX_TRIES + 5)


def test_find_miscount_walks_at_most_max_tries_times() -> None:
    one = bytes.fromhex("09 02" + PROBES * 2)
    raw = one * 40
    counted = list(range(0, len(raw), len(one)))
    calls: list[int] = []

    def never(at: int) -> bool:
        calls.append(at)
        return False

    assert find_miscount(raw, counted, len(raw), 2016, never) is None
    assert len(calls) == MAX_TRIES
    assert calls[:2] == [counted[-1] + 2 + 5, counted[-1] + 2]  # latest block, most entries
