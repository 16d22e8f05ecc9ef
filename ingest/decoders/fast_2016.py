"""Fast-path block walker for 2016 (``##``) real-time and reissue data units (§3.4, §3.6).

One function with the block bodies inline: a call per block would cost ~10 % of the frame
budget. Layout and scaling follow GB/T 32960.3-2016 Tables 9-19 and Annex B Tables B.5-B.8;
lengths per §3.12. Values are divided (``raw / 10``), not multiplied by 0.1, so that 12.2 km/h
is the float nearest to 12.2 and equals what the structured decoder and the JSON contract say.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Final

from contract.rows import MotorRow
from ingest.decoders.errors import BAD_FIELD, TRUNCATED, FrameError
from ingest.decoders.fast_common import AlarmInfo, Hints, TempEntry, VoltEntry, parse_alarm

__all__ = ["Walk", "walk_2016"]

_VEHICLE: Final = struct.Struct(">BBBHIHHBBBHBB")  # 0x01, 20 bytes (Table 9 + Annex B pedals)
_MOTOR: Final = struct.Struct(">BBBHHBHH")  # one drive motor, 12 bytes (Table 11)
_POSITION: Final = struct.Struct(">BII")  # 0x05, 9 bytes (Table 15)
_EXTREMES: Final = struct.Struct(">BBHBBHBBBBBB")  # 0x06, 14 bytes (Table 16)
_PAGE: Final = struct.Struct(">BHHHHB")  # one 0x08 voltage page header, 10 bytes (Table B.6)
_PROBES: Final = struct.Struct(">BH")  # one 0x09 subsystem header, 3 bytes (Table B.8)
_WORD: Final = struct.Struct(">H")
_LEVEL_FLAGS: Final = struct.Struct(">BI")
_NO_FAULTS: Final = b"\x00\x00\x00\x00"  # N1..N4 = 0

# (vehicle, position, extremes, alarm, motors, voltage entries, temperature entries, tail,
# extremes hints, counted, signed). ``tail`` is the frame offset of the first block the walker
# could not size (a partial frame); the hints are the raw extremes-block values (see
# ``fast_common.Hints``); ``counted`` the type-byte offsets of the motor and pack blocks, for
# ``counts.find_miscount``; ``signed`` whether a 2025 walk ended at a signature that ends the
# data unit (always False in 2016).
Walk = tuple[
    tuple[object, ...] | None,
    tuple[bool, float | None, float | None] | None,
    tuple[object, ...] | None,
    AlarmInfo | None,
    list[MotorRow],
    list[VoltEntry],
    list[TempEntry],
    int | None,
    Hints | None,
    list[int],
    bool,
]


def _short(at: int, name: str, need: int) -> FrameError:
    return FrameError(TRUNCATED, at, f"{name} block needs {need} bytes")


def walk_2016(buf: bytes, pos: int, end: int, vin: str, ts: datetime) -> Walk:
    """Walk the information blocks in ``buf[pos:end]`` (after the frame time)."""
    vehicle: tuple[object, ...] | None = None
    position: tuple[bool, float | None, float | None] | None = None
    extremes: tuple[object, ...] | None = None
    alarm: AlarmInfo | None = None
    motors: list[MotorRow] = []
    volts: list[VoltEntry] = []
    temps: list[TempEntry] = []
    hints: Hints | None = None
    counted: list[int] = []  # type-byte offsets of the motor / RESS blocks (counts.py)
    new = tuple.__new__
    start = pos
    # A block that does not fit (a count or length overrunning the data unit) stops the
    # walk like a type of unknown length: the frame keeps the blocks before it and becomes
    # partial, exactly as the structured decoder does. Nothing of that block is kept, so
    # multi-entry blocks collect their entries locally and commit them at their end.
    try:
        while pos < end:
            start = pos
            t = buf[pos]
            pos += 1
            if t == 0x01:
                if pos + 20 > end:
                    raise _short(pos, "vehicle", 20)
                vs, cs, rm, sp, od, vo, cu, soc, dc, gear, ins, acc, brk = _VEHICLE.unpack_from(
                    buf, pos
                )
                vehicle = (
                    None if vs >= 0xFE else vs,
                    None if cs >= 0xFE else cs,
                    None if rm >= 0xFE else rm,
                    None if sp >= 0xFFFE else sp / 10,
                    None if od >= 0xFFFFFFFE else od / 10,
                    None if vo >= 0xFFFE else vo / 10,
                    None if cu >= 0xFFFE else (cu - 10000) / 10,
                    None if soc >= 0xFE else soc,
                    None if dc >= 0xFE else dc,
                    gear,  # a bit field (Table A.1), kept raw
                    ins,  # 2016 insulation resistance has no sentinels
                    None if acc >= 0xFE else acc,
                    None if brk >= 0xFE else brk,
                )
                pos += 20
            elif t == 0x08:
                counted.append(start)
                if pos >= end:
                    raise _short(pos, "RESS voltage", 1)
                n = buf[pos]
                pos += 1
                if n >= 0xFE:
                    continue  # sentinel count: no subsystems follow
                if pos + 10 * n > end:
                    raise FrameError(
                        BAD_FIELD, pos, f"{n} RESS voltage pages overrun the data unit"
                    )
                page: list[VoltEntry] = []
                for _ in range(n):
                    if pos + 10 > end:
                        raise FrameError(TRUNCATED, pos, "RESS voltage page header needs 10 bytes")
                    pack, vo, cu, total, first, m = _PAGE.unpack_from(buf, pos)
                    pos += 10
                    if m >= 0xFE:
                        cells = b""  # sentinel page count: no cells follow
                    else:
                        stop = pos + 2 * m
                        if stop > end:
                            raise FrameError(BAD_FIELD, pos, f"{m} cells overrun the data unit")
                        cells = buf[pos:stop]
                        pos = stop
                    page.append(
                        (
                            pack,
                            None if vo >= 0xFFFE else vo / 10,
                            None if cu >= 0xFFFE else (cu - 10000) / 10,
                            None if total >= 0xFFFE else total,
                            first,
                            cells,
                        )
                    )
                volts += page
            elif t == 0x09:
                counted.append(start)
                if pos >= end:
                    raise _short(pos, "RESS temperature", 1)
                n = buf[pos]
                pos += 1
                if n >= 0xFE:
                    continue
                if pos + 3 * n > end:
                    raise FrameError(BAD_FIELD, pos, f"{n} RESS probe lists overrun the data unit")
                probe_lists: list[TempEntry] = []
                for _ in range(n):
                    if pos + 3 > end:
                        raise FrameError(TRUNCATED, pos, "RESS temperature header needs 3 bytes")
                    pack, k = _PROBES.unpack_from(buf, pos)
                    pos += 3
                    if k >= 0xFFFE:
                        probe_lists.append((pack, b""))
                        continue
                    stop = pos + k
                    if stop > end:
                        raise FrameError(BAD_FIELD, pos, f"{k} probes overrun the data unit")
                    probe_lists.append((pack, buf[pos:stop]))
                    pos = stop
                temps += probe_lists
            elif t == 0x02:
                counted.append(start)
                if pos >= end:
                    raise _short(pos, "drive motor", 1)
                n = buf[pos]
                pos += 1
                if n >= 0xFE:
                    continue
                if pos + 12 * n > end:
                    raise FrameError(BAD_FIELD, pos, f"{n} drive motors overrun the data unit")
                for _ in range(n):
                    seq, st, ct, sp, tq, mt, vo, cu = _MOTOR.unpack_from(buf, pos)
                    pos += 12
                    motors.append(
                        new(
                            MotorRow,
                            (
                                vin,
                                ts,
                                seq,
                                None if st >= 0xFE else st,
                                None if ct >= 0xFE else ct - 40,
                                None if sp >= 0xFFFE else sp - 20000,
                                None if tq >= 0xFFFE else (tq - 20000) / 10,
                                None if mt >= 0xFE else mt - 40,
                                None if vo >= 0xFFFE else vo / 10,
                                None if cu >= 0xFFFE else (cu - 10000) / 10,
                            ),
                        )
                    )
            elif t == 0x05:
                if pos + 9 > end:
                    raise _short(pos, "position", 9)
                st, lon, lat = _POSITION.unpack_from(buf, pos)
                pos += 9
                position = (
                    not st & 0x01,  # bit 0 set = fix invalid
                    None if lon >= 0xFFFFFFFE else (-lon if st & 0x04 else lon) / 1e6,
                    None if lat >= 0xFFFFFFFE else (-lat if st & 0x02 else lat) / 1e6,
                )
            elif t == 0x06:
                if pos + 14 > end:
                    raise _short(pos, "extremes", 14)
                vp, vc, vmax, np_, nc, vmin, tp, tc, tmax, sp_, sc, tmin = _EXTREMES.unpack_from(
                    buf, pos
                )
                pos += 14
                extremes = (
                    None if vmax >= 0xFFFE else vmax / 1000,
                    None if vp >= 0xFE else vp,
                    None if vc >= 0xFE else vc,
                    None if vmin >= 0xFFFE else vmin / 1000,
                    None if np_ >= 0xFE else np_,
                    None if nc >= 0xFE else nc,
                    None if tmax >= 0xFE else tmax - 40,
                    None if tp >= 0xFE else tp,
                    None if tc >= 0xFE else tc,
                    None if tmin >= 0xFE else tmin - 40,
                    None if sp_ >= 0xFE else sp_,
                    None if sc >= 0xFE else sc,
                )
                hints = (vp, vmax, np_, vmin, tp, tmax, sp_, tmin)
            elif t == 0x07:
                if buf[pos + 5 : pos + 9] == _NO_FAULTS and pos + 9 <= end:
                    # The usual alarm block: four zero fault counts, no lists to read.
                    level, flags = _LEVEL_FLAGS.unpack_from(buf, pos)
                    pos += 9
                    alarm = (
                        None if level >= 0xFE else level,
                        flags,  # all 32 bits are flags: no sentinel
                        0,
                        [],
                        [],
                        [],
                        [],
                        None,
                    )
                else:
                    pos, alarm = parse_alarm(buf, pos, end, False)
            elif t == 0x03:
                # Fuel cell: 18 + N bytes, N = probe count WORD at body offset 6 (sentinel: none).
                if pos + 8 > end:
                    raise _short(pos, "fuel cell", 18)
                (k,) = _WORD.unpack_from(buf, pos + 6)
                size = 18 + (0 if k >= 0xFFFE else k)
                if pos + size > end:
                    raise FrameError(
                        BAD_FIELD, pos + 8, f"{k} fuel-cell probes overrun the data unit"
                    )
                pos += size
            elif t == 0x04:
                if pos + 5 > end:
                    raise _short(pos, "engine", 5)
                pos += 5
            elif 0x80 <= t <= 0xFE:
                # User-defined: WORD length + bytes (Table 19). Shanghai buses send 0x81/0x82 with
                # no length at all, so a length that overruns the data unit means "cannot size this
                # block": keep what was decoded and stop, never guess (§3.12).
                length = _WORD.unpack_from(buf, pos)[0] if pos + 2 <= end else None
                if length is None or pos + 2 + length > end:
                    return (
                        vehicle,
                        position,
                        extremes,
                        alarm,
                        motors,
                        volts,
                        temps,
                        start,
                        hints,
                        counted,
                        False,
                    )
                pos += 2 + length
            else:
                # 0x00 and 0x0A-0x7F have no defined length: the rest is an opaque tail.
                return (
                    vehicle,
                    position,
                    extremes,
                    alarm,
                    motors,
                    volts,
                    temps,
                    start,
                    hints,
                    counted,
                    False,
                )
    except FrameError:
        return (
            vehicle,
            position,
            extremes,
            alarm,
            motors,
            volts,
            temps,
            start,
            hints,
            counted,
            False,
        )
    return vehicle, position, extremes, alarm, motors, volts, temps, None, hints, counted, False
