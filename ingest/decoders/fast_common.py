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
    if yy > 99:
        raise FrameError(BAD_FIELD, offset, f"frame time: year byte {yy} > 99")
    try:
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

# _GE[k] maps a byte to 1 if it is >= k, else 0: ``1 in raw.translate(_GE[k])`` asks "is any
# byte >= k?" in two C passes (~80 ns for 96 bytes, against ~1 us for ``max(raw)``).
_GE: Final = tuple(bytes(v >= k for v in range(256)) for k in range(257))
# Deletion sets for ``translate``: the bytes <= k / >= k.
_UPTO: Final = tuple(bytes(range(k + 1)) for k in range(256))
_FROM: Final = tuple(bytes(range(k, 256)) for k in range(256))
# _EQ[k] / _NE[k] map a byte to 0xFF if it is == k / != k, else 0: lane masks for big ints.
_EQ: Final = tuple(bytes(0xFF if v == k else 0 for v in range(256)) for k in range(256))
_NE: Final = tuple(bytes(0 if v == k else 0xFF for v in range(256)) for k in range(256))


def _has_cell(raw: bytes, mv: int) -> bool:
    """Whether some cell (at an even offset) of ``raw`` equals ``mv``."""
    pattern = mv.to_bytes(2, "big")
    at = raw.find(pattern)
    while at & 1 and at > 0:  # a match straddling two cells (-1: none)
        at = raw.find(pattern, at + 1)
    return at >= 0


def _split_hints_hold(raw: bytes, hi: bytes, hint_max: int, hint_min: int) -> bool:
    """Whether ``hint_min``/``hint_max`` are the extremes of cells whose high bytes differ
    (a pack straddling a 256 mV boundary, common for LFP around 3.328 V).

    High bytes must lie in [L, H] (the hints' high bytes); among cells with high byte H the low
    bytes must not exceed the max's, among those with L not go below the min's. The low bytes
    of the other cells are masked off as one big integer (AND with 0x00 / OR with 0xFF lanes),
    so every step stays a C-level pass over the bytes.
    """
    top, bottom = hint_max >> 8, hint_min >> 8
    if not bottom < top < 0xFF:
        return False
    if 1 in hi.translate(_GE[top + 1]) or 0 in hi.translate(_GE[bottom]):
        return False
    if not (_has_cell(raw, hint_max) and _has_cell(raw, hint_min)):
        return False
    n = len(hi)
    low = int.from_bytes(raw[1::2], "big")
    at_top = low & int.from_bytes(hi.translate(_EQ[top]), "big")
    if 1 in at_top.to_bytes(n, "big").translate(_GE[(hint_max & 0xFF) + 1]):
        return False
    at_bottom = low | int.from_bytes(hi.translate(_NE[bottom]), "big")
    return 0 not in at_bottom.to_bytes(n, "big").translate(_GE[hint_min & 0xFF])


def cell_extremes(
    raw: bytes, hint_max: int = -1, hint_min: int = -1
) -> tuple[int | None, int | None]:
    """(min, max) in mV of big-endian u16 cell voltages, ignoring 0xFFFE/0xFFFF; None if none.

    ``min()``/``max()`` box and compare every value in the interpreter (~1 us per 96 cells
    each), so the common case is answered with C-level bytes operations instead: a pack's
    cells sit within 256 mV of each other, so their high bytes are all equal (one ``count``),
    and then the extremes are those of the low bytes. When the frame's extremes block names
    this pack, its values are checked rather than searched for: present, and nothing beyond
    (``translate`` + ``in``; also for a pack straddling a 256 mV boundary). Otherwise a sample's
    range is widened by what ``translate`` leaves outside it; anything else (sentinels,
    straddling packs without hints) goes through ``array``.
    """
    hi = raw[0::2]
    if not hi:
        return None, None
    h = hi[0]
    if h != 0xFF and hi.count(h) == len(hi):
        low = raw[1::2]
        base = h << 8
        if hint_max >> 8 == h and hint_min >> 8 == h:
            top, bottom = hint_max & 0xFF, hint_min & 0xFF
            if (
                top in low
                and bottom in low
                and 1 not in low.translate(_GE[top + 1])
                and 0 not in low.translate(_GE[bottom])
            ):
                return hint_min, hint_max
        # No usable hints: take the extremes of a few cells, then let ``translate`` delete
        # every low byte inside that range (one C pass each way); only the few bytes beyond
        # it are compared in the interpreter.
        sample = low[:8]
        top, bottom = max(sample), min(sample)
        above = low.translate(None, _UPTO[top])
        if above:
            top = max(above)
        below = low.translate(None, _FROM[bottom])
        if below:
            bottom = min(below)
        return base + bottom, base + top
    if hint_max >= 0 and _split_hints_hold(raw, hi, hint_max, hint_min):
        return hint_min, hint_max
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


def probe_extremes(
    raw: bytes, hint_max: int = -1, hint_min: int = -1
) -> tuple[int | None, int | None]:
    """(min, max) in °C of u8 probe temperatures (raw − 40), ignoring 0xFE/0xFF; None if none.

    Hints are raw bytes (°C + 40) from the extremes block, verified as in ``cell_extremes``.
    """
    if not raw:
        return None, None
    if (
        0 <= hint_min <= hint_max < 0xFE
        and hint_max in raw
        and hint_min in raw
        and 1 not in raw.translate(_GE[hint_max + 1])
        and 0 not in raw.translate(_GE[hint_min])
    ):
        return hint_min - 40, hint_max - 40
    values = sorted(set(raw))
    while values and values[-1] >= 0xFE:
        values.pop()
    if not values:
        return None, None
    return values[0] - 40, values[-1] - 40


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


_U16: Final = struct.Struct(">H")


def _cell_index(raw: bytes, mv: int) -> int:
    """0-based index of the first cell equal to ``mv``, which must be present."""
    pattern = _U16.pack(mv)
    at = raw.find(pattern)
    while at & 1 and at > 0:  # a match straddling two cells
        at = raw.find(pattern, at + 1)
    return at >> 1


_NO_VOLTS: Final[
    tuple[float | None, int | None, int | None, float | None, int | None, int | None]
] = (
    None,
    None,
    None,
    None,
    None,
    None,
)


def derive_extremes(packs: list[PackRow]) -> Extremes | None:
    """Frame extremes from the pack rows (2025 has no extremes block): the highest and lowest
    non-sentinel cell and probe over all packs, first pack and first position on ties.
    ``None`` when no pack has a valid cell or probe."""
    if len(packs) == 1:  # the usual frame: one pack, no comparisons between packs
        _, _, pack, _, _, _, first, raw, probes, cmin, cmax, pmin, pmax = packs[0]
        if cmax is None or cmin is None:
            if pmax is None or pmin is None:
                return None
            v6 = _NO_VOLTS
        else:
            # _cell_index inlined: a call costs as much as the search itself.
            top = raw.find(cmax.to_bytes(2, "big"))
            bottom = raw.find(cmin.to_bytes(2, "big"))
            if top & 1:  # a match straddling two cells: search on 2-byte alignment
                top = _cell_index(raw, cmax) << 1
            if bottom & 1:
                bottom = _cell_index(raw, cmin) << 1
            v6 = (cmax / 1000, pack, first + (top >> 1), cmin / 1000, pack, first + (bottom >> 1))
        if pmax is None or pmin is None:
            return (*v6, None, None, None, None, None, None)
        return (
            *v6,
            pmax,
            pack,
            1 + probes.index(pmax + 40),
            pmin,
            pack,
            1 + probes.index(pmin + 40),
        )
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
    if vmax is None or vmin is None:
        volts: tuple[float | None, int | None, int | None, float | None, int | None, int | None] = (
            None,
            None,
            None,
            None,
            None,
            None,
        )
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
