"""Shared pieces of the fast path (``ingest.decoders.fast``): frame-time cache, array extremes.

Everything here runs once or more per frame at 100k frames/s, so the helpers avoid per-element
Python work where a C-level bytes operation can do it (see docs/performance.md, "Decoding").
"""

from __future__ import annotations

import struct
import sys
from array import array
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from ingest.decoders.errors import BAD_FIELD, TRUNCATED, FrameError
from ingest.decoders.rows import PackRow

__all__ = [
    "BEIJING",
    "U32_LISTS",
    "cell_extremes",
    "frame_time",
    "join_packs",
    "probe_extremes",
]

BEIJING: Final = timezone(timedelta(hours=8))  # the frame clock is GMT+8 (§1.3)
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
    try:
        # YY is 0..99 by the standard; a larger byte still names a year datetime can hold.
        ts = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=BEIJING)
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

_SWAP: Final = sys.byteorder == "little"  # array('H') is native-endian; the frame is big-endian


def cell_extremes(raw: bytes) -> tuple[int | None, int | None]:
    """(min, max) in mV of big-endian u16 cell voltages, ignoring 0xFFFE/0xFFFF; None if none.

    Common case first: the cells of a pack sit within 256 mV of each other, so all high bytes
    are equal (one C-level ``count``) and the extremes come from the set of low bytes, which
    costs a third of boxing every value into an int. Otherwise: array + byteswap + min/max.
    """
    hi = raw[0::2]
    if not hi:
        return None, None
    h = hi[0]
    if h != 0xFF and hi.count(h) == len(hi):
        low = set(raw[1::2])
        base = h << 8
        return base + min(low), base + max(low)
    cells = array("H", raw)
    if _SWAP:
        cells.byteswap()
    top = max(cells)
    if top < 0xFFFE:
        return min(cells), top
    valid = [v for v in cells if v < 0xFFFE]
    if not valid:
        return None, None
    return min(valid), max(valid)


def probe_extremes(raw: bytes) -> tuple[int | None, int | None]:
    """(min, max) in °C of u8 probe temperatures (raw − 40), ignoring 0xFE/0xFF; None if none."""
    if not raw:
        return None, None
    top = max(raw)
    if top < 0xFE:
        return min(raw) - 40, top - 40
    valid = raw.translate(None, b"\xfe\xff")
    if not valid:
        return None, None
    return min(valid) - 40, max(valid) - 40


# A voltage entry: (pack, voltage_v, current_a, cell_count, first_cell, cells_raw);
# a temperature entry: (pack, probes_raw).
VoltEntry = tuple[int, float | None, float | None, int | None, int, bytes]
TempEntry = tuple[int, bytes]

_NO_CELLS: Final = (None, None)


def join_packs(
    vin: str,
    ts: datetime,
    volts: list[VoltEntry],
    temps: list[TempEntry],
) -> list[PackRow]:
    """Pack rows: each voltage entry joined with the first unused temperature entry of the same
    pack number, in voltage-entry order; then the packs that only have temperatures.

    Order-independent on purpose: real Dongfeng frames send 0x09 before 0x08 (§3.4).
    """
    new = tuple.__new__
    rows: list[PackRow] = []
    if len(volts) == 1 and len(temps) == 1 and volts[0][0] == temps[0][0]:
        # The typical frame: one pack, one voltage page and one temperature list.
        pack, volt, cur, count, first, cells = volts[0]
        probes = temps[0][1]
        cmin, cmax = cell_extremes(cells) if cells else _NO_CELLS
        pmin, pmax = probe_extremes(probes)
        values = (vin, ts, pack, volt, cur, count, first, cells, probes, cmin, cmax, pmin, pmax)
        rows.append(new(PackRow, values))
        return rows
    unused = list(temps)
    for pack, volt, cur, count, first, cells in volts:
        probes = b""
        for k, entry in enumerate(unused):
            if entry[0] == pack:
                probes = entry[1]
                del unused[k]
                break
        cmin, cmax = cell_extremes(cells) if cells else _NO_CELLS
        pmin, pmax = probe_extremes(probes)
        values = (vin, ts, pack, volt, cur, count, first, cells, probes, cmin, cmax, pmin, pmax)
        rows.append(new(PackRow, values))
    for pack, probes in unused:
        pmin, pmax = probe_extremes(probes)
        values = (vin, ts, pack, None, None, None, 1, b"", probes, None, None, pmin, pmax)
        rows.append(new(PackRow, values))
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
            raise FrameError(BAD_FIELD, pos - 1, f"{n} fault codes overrun the data unit")
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
                raise FrameError(BAD_FIELD, pos - 1, f"{n} bit levels overrun the data unit")
            bit_levels = list(buf[pos : pos + 2 * n])
            pos += 2 * n
    ress, motor, engine, other = lists
    info: AlarmInfo = (
        None if level >= 0xFE else level,
        None if flags >= 0xFFFFFFFE else flags,
        len(ress) + len(motor) + len(engine) + len(other),
        ress,
        motor,
        engine,
        other,
        bit_levels,
    )
    return pos, info


_LEVEL_FLAGS: Final = struct.Struct(">BI")


# Extremes as VehicleRow orders them: max V, pack, cell, min V, pack, cell, max T, pack, probe,
# min T, pack, probe.
Extremes = tuple[
    float | None,
    int | None,
    int | None,
    float | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
]
NO_EXTREMES: Final[Extremes] = (
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
)


def _cell_index(raw: bytes, mv: int) -> int:
    """0-based index of the first cell equal to ``mv`` (a C-level search on 2-byte alignment)."""
    pattern = mv.to_bytes(2, "big")
    at = raw.find(pattern)
    while at & 1:  # a match straddling two cells
        at = raw.find(pattern, at + 1)
    return at >> 1


def derive_extremes(packs: list[PackRow]) -> Extremes | None:
    """Frame extremes from the pack rows (2025 has no extremes block): the highest and lowest
    non-sentinel cell and probe over all packs, first pack and first position on ties.
    ``None`` when no pack has a valid cell or probe."""
    vmax = vmin = tmax = tmin = None
    hi = lo = thi = tlo = 0
    for row in packs:
        cmax, cmin = row.cell_max_mv, row.cell_min_mv
        if cmax is not None and cmin is not None:
            if vmax is None or cmax > hi:
                vmax, hi = row, cmax
            if vmin is None or cmin < lo:
                vmin, lo = row, cmin
        pmax, pmin = row.probe_max_c, row.probe_min_c
        if pmax is not None and pmin is not None:
            if tmax is None or pmax > thi:
                tmax, thi = row, pmax
            if tmin is None or pmin < tlo:
                tmin, tlo = row, pmin
    if vmax is None and tmax is None:
        return None
    volts: tuple[float | None, int | None, int | None, float | None, int | None, int | None]
    if vmax is None or vmin is None:
        volts = (None, None, None, None, None, None)
    else:
        volts = (
            hi / 1000,
            vmax.pack,
            vmax.first_cell + _cell_index(vmax.cell_voltages_raw, hi),
            lo / 1000,
            vmin.pack,
            vmin.first_cell + _cell_index(vmin.cell_voltages_raw, lo),
        )
    if tmax is None or tmin is None:
        return (*volts, None, None, None, None, None, None)
    return (
        *volts,
        thi,
        tmax.pack,
        1 + tmax.probe_temps_raw.index(thi + 40),
        tlo,
        tmin.pack,
        1 + tmin.probe_temps_raw.index(tlo + 40),
    )
