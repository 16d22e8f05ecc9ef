"""Cell and probe extremes at C speed for the fast path, and the 2025 derived frame extremes.

Per-pack min/max is the most expensive part of a real-time frame when done the obvious way:
``min()``/``max()`` over 96 cells box and compare every value in the interpreter. The helpers
here answer with C-level ``bytes`` operations (``count``, ``translate``, ``find``, ``in``)
and fall back to ``array`` only for the unusual cases (see docs/performance.md, "Decoding").
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Final

from contract.rows import PackRow

__all__ = ["NO_EXTREMES", "Extremes", "cell_extremes", "derive_extremes", "probe_extremes"]

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
