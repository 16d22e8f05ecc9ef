"""Shared pieces of the fast path (``ingest.decoders.fast``): frame-time cache, pack joins,
the alarm block.

Everything here runs once or more per frame at 100k frames/s, so the helpers avoid per-element
Python work where a C-level bytes operation can do it (see docs/performance.md, "Decoding").
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Final

from contract.clock import CHINA_TZ
from contract.rows import PackRow
from ingest.decoders.checksum import bcc
from ingest.decoders.envelope import HEADER, HEADER_SIZE, MAX_DATA_LENGTH
from ingest.decoders.errors import BAD_FIELD, TRUNCATED, FrameError
from ingest.decoders.fast_extremes import cell_extremes, probe_extremes

__all__ = [
    "TIMES",
    "U32_LISTS",
    "AlarmInfo",
    "Hints",
    "TempEntry",
    "VoltEntry",
    "frame_time",
    "join_packs",
    "parse_alarm",
    "plain_data",
]


def plain_data(buf: bytes) -> tuple[int, bytes, int] | None:
    """``(command, raw ID, end of the data unit)`` of a well-formed real-time (0x02) or
    reissue (0x03) command packet with a plain data unit, in either envelope: the checks of
    ``parse_envelope`` without building an ``Envelope``. ``None`` for anything else, which
    the caller gives to its structured decoder (the one that raises the exact error). The
    vehicle, pack and charger fast paths all start here."""
    if len(buf) > HEADER_SIZE and buf[0] == buf[1] and (buf[0] == 0x23 or buf[0] == 0x24):
        _, command, response, raw_id, encryption, length = HEADER.unpack_from(buf)
        end = HEADER_SIZE + length
        if (
            (command == 0x02 or command == 0x03)
            and response == 0xFE
            and encryption == 0x01
            and len(buf) == end + 1
            and length <= MAX_DATA_LENGTH
            and bcc(buf, 2, end) == buf[end]
        ):
            return command, raw_id, end
    return None


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)

# Many frames share a collection second (every vehicle reports at 1 Hz on the second), so the
# datetime and epoch-ms of a 6-byte time are built once and looked up after that. Bounded: an
# hour of distinct seconds at most, cleared wholesale (cheaper than LRU bookkeeping per frame).
_TIME_CACHE_MAX: Final = 4096
_TIMES: dict[bytes, tuple[datetime, int]] = {}


def frame_time(raw: bytes, offset: int) -> tuple[datetime, int]:
    """The 6-byte frame time ``raw`` (YY MM DD hh mm ss, binary) found at frame ``offset`` as an
    aware +08:00 datetime and epoch milliseconds; ``FrameError(bad_field)`` if it is no date.

    Callers look ``_TIMES`` up first; this is the miss path.
    """
    hit = _TIMES.get(raw)
    if hit is not None:
        return hit
    if len(raw) != 6:
        raise FrameError(BAD_FIELD, offset, "frame time needs 6 bytes")
    yy, mo, dd, hh, mi, ss = raw
    if yy > 99:
        raise FrameError(BAD_FIELD, offset, f"frame time: year byte {yy} > 99")
    try:
        ts = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=CHINA_TZ)
    except ValueError:
        raise FrameError(BAD_FIELD, offset, f"frame time {raw.hex()} is not a date") from None
    value = (ts, (ts - _EPOCH) // _MS)
    if len(_TIMES) >= _TIME_CACHE_MAX:
        _TIMES.clear()
    _TIMES[raw] = value
    return value


TIMES: Final = _TIMES  # the cache itself, for the inlined hit path in fast.py


# Fault-code lists: N big-endian DWORDs, one precompiled layout per count (a count is a BYTE).
U32_LISTS: Final = tuple(struct.Struct(f">{n}I") for n in range(256))

# A voltage entry: (pack, voltage_v, current_a, cell_count, first_cell, cells_raw);
# a temperature entry: (pack, probes_raw).
VoltEntry = tuple[int, float | None, float | None, int | None, int, bytes]
TempEntry = tuple[int, bytes]


# Raw values of a 2016 extremes block, used to check rather than search the packs' extremes:
# (max-voltage pack, max mV, min-voltage pack, min mV, max-temp pack, max raw, min-temp pack,
# min raw). Never trusted: ``cell_extremes``/``probe_extremes`` verify them against the data.
Hints = tuple[int, int, int, int, int, int, int, int]
_NO_HINTS: Final[Hints] = (-1, -1, -1, -1, -1, -1, -1, -1)


def _row(
    vin: str, ts: datetime, volt: VoltEntry | None, pack: int, probes: bytes, hints: Hints
) -> PackRow:
    vp, vmax, np_, vmin, tp, tmax, sp, tmin = hints
    pmin, pmax = probe_extremes(probes, tmax, tmin) if tp == sp == pack else probe_extremes(probes)
    if volt is None:
        only = (vin, ts, pack, None, None, None, 1, b"", probes, None, None, pmin, pmax)
        return tuple.__new__(PackRow, only)
    _, v, cur, count, first, cells = volt
    cmin: int | None = None
    cmax: int | None = None
    if not cells:
        pass
    elif vp == np_ == pack:
        cmin, cmax = cell_extremes(cells, vmax, vmin)
    else:
        cmin, cmax = cell_extremes(cells)
    values = (vin, ts, pack, v, cur, count, first, cells, probes, cmin, cmax, pmin, pmax)
    return tuple.__new__(PackRow, values)


def join_packs(
    vin: str,
    ts: datetime,
    volts: list[VoltEntry],
    temps: list[TempEntry],
    hints: Hints | None,
) -> list[PackRow]:
    """Pack rows: each voltage entry joined with the first unused temperature entry of the same
    pack number, in voltage-entry order; then the packs that only have temperatures.

    Order-independent on purpose: real Dongfeng frames send 0x09 before 0x08 (§3.4).
    """
    if hints is None:
        hints = _NO_HINTS
    if len(volts) == 1 and len(temps) == 1 and volts[0][0] == temps[0][0]:
        # The typical frame: one pack, one voltage page and one temperature list.
        return [_row(vin, ts, volts[0], volts[0][0], temps[0][1], hints)]
    rows: list[PackRow] = []
    unused = list(temps)
    for volt in volts:
        pack = volt[0]
        probes = b""
        for k, entry in enumerate(unused):
            if entry[0] == pack:
                probes = entry[1]
                del unused[k]
                break
        rows.append(_row(vin, ts, volt, pack, probes, hints))
    for pack, probes in unused:
        rows.append(_row(vin, ts, None, pack, probes, hints))
    return rows


# Alarm summary: (max_level, general_flags, fault_count, ress, motor, engine, other, bit_levels).
AlarmInfo = tuple[
    int | None, int | None, int, list[int], list[int], list[int], list[int], list[int] | None
]


def parse_alarm(buf: bytes, pos: int, end: int, edition_2025: bool) -> tuple[int, AlarmInfo]:
    """The alarm block body at ``pos`` (2016 0x07 / 2025 0x06): (next offset, summary).

    A count byte of 0xFE/0xFF is a sentinel and is followed by no codes (§3 sentinels).
    """
    if pos + 5 > end:
        raise FrameError(TRUNCATED, pos, "alarm block needs 5 bytes for level and flags")
    level, flags = _LEVEL_FLAGS.unpack_from(buf, pos)
    pos += 5
    lists: list[list[int]] = []
    for _ in range(4):
        if pos >= end:
            raise FrameError(TRUNCATED, pos, "alarm block ends before a fault count")
        n = buf[pos]
        pos += 1
        if n >= 0xFE:
            lists.append([])
            continue
        if pos + 4 * n > end:
            raise FrameError(BAD_FIELD, pos, f"{n} fault codes overrun the data unit")
        lists.append(list(U32_LISTS[n].unpack_from(buf, pos)))
        pos += 4 * n
    bit_levels: list[int] | None = None
    if edition_2025:
        if pos >= end:
            raise FrameError(TRUNCATED, pos, "alarm block ends before the bit-level count")
        n = buf[pos]
        pos += 1
        if n >= 0xFE:
            bit_levels = []
        else:
            if pos + 2 * n > end:
                raise FrameError(BAD_FIELD, pos, f"{n} bit levels overrun the data unit")
            bit_levels = list(buf[pos : pos + 2 * n])
            pos += 2 * n
    ress, motor, engine, other = lists
    info: AlarmInfo = (
        None if level >= 0xFE else level,
        flags,  # all 32 bits are flags: no sentinel (Table 18)
        len(ress) + len(motor) + len(engine) + len(other),
        ress,
        motor,
        engine,
        other,
        bit_levels,
    )
    return pos, info


_LEVEL_FLAGS: Final = struct.Struct(">BI")
