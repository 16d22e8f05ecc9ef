"""Fast-path block walker for 2025 (``$$``) real-time and reissue data units (§3.4, §3.7).

Same shape as ``fast_2016`` (one function, bodies inline) with the 2025 layouts: renumbered
types (alarm 0x06, cell voltages 0x07 without paging, temperatures 0x08), the 0x30-0x32 types,
and the signature (0xFF) that ends the blocks. Offsets and scaling per GB/T 32960.3-2025
Tables 10-27; lengths per §3.12.

Duplication, on purpose: the blocks both editions share (vehicle, motors, position, extremes
tails) repeat ``fast_2016``'s bodies here, because a helper call per block costs ~10 % of the
frame budget (measured; docs/performance.md) and ``duplicates`` lists them. The structured
decoder (``ingest.decoders.blocks``) is the single readable definition of every layout, and the
agreement tests hold both paths to it; the native hot path of the next step replaces these
walkers rather than factoring them.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Final

from contract.rows import MotorRow
from ingest.decoders.errors import BAD_FIELD, TRUNCATED, FrameError
from ingest.decoders.fast_2016 import Walk
from ingest.decoders.fast_common import AlarmInfo, TempEntry, VoltEntry, parse_alarm

__all__ = ["walk_2025"]

_VEHICLE: Final = struct.Struct(">BBBHIHHBBBH")  # 0x01, 18 bytes (Table 10)
_MOTOR: Final = struct.Struct(">BBBHIB")  # one drive motor, 10 bytes (Table 16)
_POSITION: Final = struct.Struct(">BBII")  # 0x05, 10 bytes: status, coordinate system, lon, lat
_PACK: Final = struct.Struct(">BHHH")  # one 0x07 pack header, 7 bytes (Table 12)
_PROBES: Final = struct.Struct(">BH")  # one 0x08 pack header, 3 bytes (Table 14)
_WORD: Final = struct.Struct(">H")
_LEVEL_FLAGS: Final = struct.Struct(">BI")
_NO_FAULTS: Final = b"\x00\x00\x00\x00\x00"  # N1..N4 = 0 and N5 = 0


def _short(at: int, name: str, need: int) -> FrameError:
    return FrameError(TRUNCATED, at, f"{name} block needs {need} bytes")


def walk_2025(buf: bytes, pos: int, end: int, vin: str, ts: datetime) -> Walk:
    """Walk the information blocks in ``buf[pos:end]`` (after the frame time) up to the
    signature marker 0xFF, which must be the last block and is not part of the rows."""
    vehicle: tuple[object, ...] | None = None
    position: tuple[bool, float | None, float | None] | None = None
    alarm: AlarmInfo | None = None
    motors: list[MotorRow] = []
    volts: list[VoltEntry] = []
    temps: list[TempEntry] = []
    counted: list[int] = []  # type-byte offsets of the motor / pack blocks (counts.py)
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
                if pos + 18 > end:
                    raise _short(pos, "vehicle", 18)
                vs, cs, rm, sp, od, vo, cu, soc, dc, gear, ins = _VEHICLE.unpack_from(buf, pos)
                vehicle = (
                    None if vs >= 0xFE else vs,
                    None if cs >= 0xFE else cs,
                    None if rm >= 0xFE else rm,
                    None if sp >= 0xFFFE else sp / 10,
                    None if od >= 0xFFFFFFFE else od / 10,
                    None if vo >= 0xFFFE else vo / 10,
                    None if cu >= 0xFFFE else (cu - 30000) / 10,  # 2025 offset is 3000 A
                    None if soc >= 0xFE else soc,
                    None if dc >= 0xFE else dc,
                    gear,  # bit 7 = gear invalid (Table A.1); kept raw
                    None if ins >= 0xFFFE else ins,
                    None,  # the pedals left the 2025 vehicle block
                    None,
                )
                pos += 18
            elif t == 0x07:
                counted.append(start)
                if pos >= end:
                    raise _short(pos, "cell voltage", 1)
                n = buf[pos]
                pos += 1
                if n >= 0xFE:
                    continue
                if pos + 7 * n > end:
                    raise FrameError(
                        BAD_FIELD, pos, f"{n} cell voltage packs overrun the data unit"
                    )
                page: list[VoltEntry] = []
                for _ in range(n):
                    if pos + 7 > end:
                        raise FrameError(TRUNCATED, pos, "cell voltage pack header needs 7 bytes")
                    pack, vo, cu, k = _PACK.unpack_from(buf, pos)
                    pos += 7
                    if k >= 0xFFFE:
                        cells = b""
                        count = None
                    else:
                        stop = pos + 2 * k
                        if stop > end:
                            raise FrameError(BAD_FIELD, pos, f"{k} cells overrun the data unit")
                        cells = buf[pos:stop]
                        count = k
                        pos = stop
                    page.append(
                        (
                            pack,
                            None if vo >= 0xFFFE else vo / 10,
                            None if cu >= 0xFFFE else (cu - 30000) / 10,
                            count,
                            1,  # 2025 has no paging: every unit of the pack is in the frame
                            cells,
                        )
                    )
                volts += page
            elif t == 0x08:
                counted.append(start)
                if pos >= end:
                    raise _short(pos, "temperature", 1)
                n = buf[pos]
                pos += 1
                if n >= 0xFE:
                    continue
                if pos + 3 * n > end:
                    raise FrameError(BAD_FIELD, pos, f"{n} probe lists overrun the data unit")
                probe_lists: list[TempEntry] = []
                for _ in range(n):
                    if pos + 3 > end:
                        raise FrameError(TRUNCATED, pos, "temperature pack header needs 3 bytes")
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
                if pos + 10 * n > end:
                    raise FrameError(BAD_FIELD, pos, f"{n} drive motors overrun the data unit")
                for _ in range(n):
                    seq, st, ct, sp, tq, mt = _MOTOR.unpack_from(buf, pos)
                    pos += 10
                    motors.append(
                        new(
                            MotorRow,
                            (
                                vin,
                                ts,
                                seq,
                                None if st >= 0xFE else st,
                                None if ct >= 0xFE else ct - 40,
                                None if sp >= 0xFFFE else sp - 32000,
                                None if tq >= 0xFFFFFFFE else (tq - 200000) / 10,
                                None if mt >= 0xFE else mt - 40,
                                None,  # controller voltage and current left the 2025 block
                                None,
                            ),
                        )
                    )
            elif t == 0x05:
                if pos + 10 > end:
                    raise _short(pos, "position", 10)
                st, _crs, lon, lat = _POSITION.unpack_from(buf, pos)
                pos += 10
                position = (
                    not st & 0x01,
                    None if lon >= 0xFFFFFFFE else (-lon if st & 0x04 else lon) / 1e6,
                    None if lat >= 0xFFFFFFFE else (-lat if st & 0x02 else lat) / 1e6,
                )
            elif t == 0x06:
                if buf[pos + 5 : pos + 10] == _NO_FAULTS and pos + 10 <= end:
                    # The usual alarm block: zero fault counts N1..N4 and no bit levels (N5).
                    level, flags = _LEVEL_FLAGS.unpack_from(buf, pos)
                    pos += 10
                    alarm = (
                        None if level >= 0xFE else level,
                        flags,  # all 32 bits are flags: no sentinel
                        0,
                        [],
                        [],
                        [],
                        [],
                        [],
                    )
                else:
                    pos, alarm = parse_alarm(buf, pos, end, True)
            elif t == 0xFF:
                # The vehicle signature (Table 8) ends the blocks; it must end the data unit
                # too, else the walk stops here (the caller then searches it backwards).
                if pos + 3 <= end:
                    at = pos + 3 + (buf[pos + 1] << 8 | buf[pos + 2])
                    if at + 2 <= end and at + 2 + (buf[at] << 8 | buf[at + 1]) == end:
                        return (
                            vehicle, position, None, alarm, motors, volts, temps, None, None,
                            counted, True,
                        )  # fmt: skip
                return (
                    vehicle,
                    position,
                    None,
                    alarm,
                    motors,
                    volts,
                    temps,
                    start,
                    None,
                    counted,
                    False,
                )
            elif t == 0x03:
                if pos + 12 > end:
                    raise _short(pos, "fuel cell", 12)
                pos += 12
            elif t == 0x04:
                if pos + 2 > end:
                    raise _short(pos, "engine", 2)
                pos += 2
            elif t == 0x30:
                # Fuel-cell stacks: count, then per stack 12 bytes with the probe count N at +10.
                if pos >= end:
                    raise _short(pos, "fuel-cell stack", 1)
                n = buf[pos]
                pos += 1
                if n >= 0xFE:
                    continue
                if pos + 12 * n > end:
                    raise FrameError(BAD_FIELD, pos, f"{n} fuel-cell stacks overrun the data unit")
                for _ in range(n):
                    if pos + 12 > end:
                        raise FrameError(TRUNCATED, pos, "fuel-cell stack needs 12 bytes")
                    (k,) = _WORD.unpack_from(buf, pos + 10)
                    size = 12 + (0 if k >= 0xFFFE else k)
                    if pos + size > end:
                        raise FrameError(BAD_FIELD, pos + 12, f"{k} probes overrun the data unit")
                    pos += size
            elif t == 0x31:
                # Super capacitor: system(1) V(2) I(2) M(2) cells(2M) N(2) probes(N).
                if pos + 7 > end:
                    raise _short(pos, "super-capacitor", 9)
                (m,) = _WORD.unpack_from(buf, pos + 5)
                at = pos + 7 + (0 if m >= 0xFFFE else 2 * m)
                if at + 2 > end:
                    raise FrameError(
                        BAD_FIELD, pos + 7, f"{m} capacitor cells overrun the data unit"
                    )
                (k,) = _WORD.unpack_from(buf, at)
                pos = at + 2 + (0 if k >= 0xFFFE else k)
                if pos > end:
                    raise FrameError(
                        BAD_FIELD, at + 2, f"{k} capacitor probes overrun the data unit"
                    )
            elif t == 0x32:
                if pos + 18 > end:
                    raise _short(pos, "super-capacitor extremes", 18)
                pos += 18
            elif 0x80 <= t <= 0xFE:
                # Custom: WORD length + bytes (Table 27); an overrunning length cannot be trusted.
                length = _WORD.unpack_from(buf, pos)[0] if pos + 2 <= end else None
                if length is None or pos + 2 + length > end:
                    return (
                        vehicle,
                        position,
                        None,
                        alarm,
                        motors,
                        volts,
                        temps,
                        start,
                        None,
                        counted,
                        False,
                    )
                pos += 2 + length
            else:
                # 0x00, 0x09-0x2F and 0x33-0x7F have no defined length: the rest is an opaque tail.
                return (
                    vehicle,
                    position,
                    None,
                    alarm,
                    motors,
                    volts,
                    temps,
                    start,
                    None,
                    counted,
                    False,
                )
    except FrameError:
        return vehicle, position, None, alarm, motors, volts, temps, start, None, counted, False
    return vehicle, position, None, alarm, motors, volts, temps, None, None, counted, False
