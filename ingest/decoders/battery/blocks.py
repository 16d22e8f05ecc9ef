"""Information types of the battery-pack profile (docs/protocols/battery.md), both envelopes.

    type  name               body
    0x01  pack_state         12 bytes fixed (below)
    0x02  site               site_id STRING(20), slot WORD
    0x03  cell_voltages      cell_count WORD n, n x WORD mV (0.001 V, 0..60000)
    0x04  probe_temperatures probe_count WORD n, n x BYTE (°C + 40, 0..250)
    0x05  alarm              max_level BYTE 0..4, flags DWORD, fault_count BYTE n, n x DWORD
    0x80-0xFE custom blocks with a WORD length (the vehicle walk's rule)

Counts FFFE/FFFF (WORD) and FE/FF (BYTE) are sentinels followed by no list, as in
GB/T 32960.3. Scalars follow ``fields.Field`` (sentinels -> ``None``, quality names them).
The records and layouts repeat the vehicle blocks' declarative form on purpose (``duplicates``
pairs them); the counted lists are read and written by ``codec.read_counted``/``write_counted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ingest.decoders.codec import (
    BlockCodec,
    fixed_codec,
    is_abnormal,
    need_items,
    read_count,
    read_counted,
    write_count,
    write_counted,
)
from ingest.decoders.envelope import EDITION_2016, EDITION_2025
from ingest.decoders.fields import Field, Layout, Quality, Record, array_struct, need
from ingest.decoders.registry import Registry
from ingest.decoders.text import decode_text, encode_text

__all__ = [
    "ALARM_FLAGS",
    "BATTERY",
    "PackAlarm",
    "PackCells",
    "PackProbes",
    "PackState",
    "Site",
    "alarm_flag_names",
]

SITE_ID_SIZE: Final = 20
MAX_CELLS: Final = 2000  # above: out_of_range (a 1000 V pack of LTO cells has ~450)
MAX_PROBES: Final = 1000


@dataclass(frozen=True, slots=True)
class PackState(Record):
    """Type 0x01: the pack's state. Current is positive when discharging (GB/T 32960)."""

    name: ClassVar[str] = "pack_state"
    lifecycle_stage: int | None = None
    work_state: int | None = None
    soc_pct: int | None = None
    soh_pct: int | None = None
    cycle_count: int | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    insulation_kohm: int | None = None
    quality: Quality = ()


STATE_LAYOUT: Final = Layout(
    (
        Field("lifecycle_stage", "B", lo=1, hi=5),
        Field("work_state", "B", lo=1, hi=3),
        Field("soc_pct", "B", hi=100),
        Field("soh_pct", "B", hi=100),
        Field("cycle_count", "H"),  # 0..65533
        Field("voltage_v", "H", div=10, hi=60_000),
        Field("current_a", "H", div=10, sub=30_000, hi=60_000),  # offset -3000 A
        Field("insulation_kohm", "H", hi=60_000),
    )
)
STATE_CODEC: Final = fixed_codec(STATE_LAYOUT, PackState, "pack_state")


@dataclass(frozen=True, slots=True)
class Site(Record):
    """Type 0x02: where the pack is: a site code (station, warehouse, ESS, recycler) or the
    VIN of the vehicle it is in, and the bay / slot there."""

    name: ClassVar[str] = "site"
    site_id: str = ""
    slot: int | None = None
    quality: Quality = ()


_SLOT: Final = Layout((Field("slot", "H"),))


def _decode_site(buf: bytes, off: int, end: int) -> tuple[Site, int]:
    need(off, SITE_ID_SIZE + 2, end, "site")
    site_id = decode_text(buf[off : off + SITE_ID_SIZE])
    (slot,), quality = _SLOT.read(buf, off + SITE_ID_SIZE, end, "site")
    return Site(site_id, slot, quality), off + SITE_ID_SIZE + 2


def _encode_site(rec: Any) -> bytes:
    return encode_text(rec.site_id, SITE_ID_SIZE) + _SLOT.write([rec.slot], rec.quality)


SITE_CODEC: Final = BlockCodec(Site, _decode_site, _encode_site)


@dataclass(frozen=True, slots=True)
class PackCells(Record):
    """Type 0x03: every cell voltage of the pack, in cell order (``None``: a sentinel)."""

    name: ClassVar[str] = "cell_voltages"
    voltages_v: tuple[float | None, ...] | None = ()
    quality: Quality = ()


def _decode_cells(buf: bytes, off: int, end: int) -> tuple[PackCells, int]:
    count = ("H", "cell_count", 0, MAX_CELLS, "cell_voltages")
    cells = read_counted(buf, off, end, count, ("H", 1000, 0), "cell_voltages")
    return PackCells(cells.values, cells.quality), cells.end


def _encode_cells(rec: Any) -> bytes:
    abnormal = is_abnormal(rec.quality, "cell_count")
    return write_counted("H", rec.voltages_v, abnormal, ("H", 1000, 0))


CELLS_CODEC: Final = BlockCodec(PackCells, _decode_cells, _encode_cells)


@dataclass(frozen=True, slots=True)
class PackProbes(Record):
    """Type 0x04: every probe temperature of the pack, in probe order."""

    name: ClassVar[str] = "probe_temperatures"
    temps_c: tuple[int | None, ...] | None = ()
    quality: Quality = ()


def _decode_probes(buf: bytes, off: int, end: int) -> tuple[PackProbes, int]:
    count = ("H", "probe_count", 0, MAX_PROBES, "probes")
    probes = read_counted(buf, off, end, count, ("B", 1, 40), "probe_temperatures")
    temps: Any = probes.values
    return PackProbes(temps, probes.quality), probes.end


def _encode_probes(rec: Any) -> bytes:
    abnormal = is_abnormal(rec.quality, "probe_count")
    return write_counted("H", rec.temps_c, abnormal, ("B", 1, 40))


PROBES_CODEC: Final = BlockCodec(PackProbes, _decode_probes, _encode_probes)

# Alarm flag bits: 0-11, 16, 18 as GB/T 32960.3 Table 18 (general alarm flags) for the
# battery-related ones, 19-23 pack-specific (this profile). Other bits are reserved.
ALARM_FLAGS: Final = {
    0: "temperature_difference",
    1: "battery_high_temperature",
    2: "pack_over_voltage",
    3: "pack_under_voltage",
    4: "soc_low",
    5: "cell_over_voltage",
    6: "cell_under_voltage",
    7: "soc_high",
    8: "soc_jump",
    9: "pack_mismatch",
    10: "cell_consistency_poor",
    11: "insulation",
    16: "hv_interlock",
    18: "pack_over_charge",
    19: "thermal_runaway",
    20: "bms_communication_lost",
    21: "coolant_leak",
    22: "mechanical_damage",
    23: "soh_low",
}


def alarm_flag_names(flags: int | None) -> list[str]:
    """The names of the set bits (``bit_<n>`` for a reserved one)."""
    if flags is None:
        return []
    return [ALARM_FLAGS.get(b, f"bit_{b}") for b in range(32) if flags >> b & 1]


@dataclass(frozen=True, slots=True)
class PackAlarm(Record):
    """Type 0x05: the highest alarm level (0 none .. 4), flag bits and fault codes."""

    name: ClassVar[str] = "alarm"
    max_level: int | None = None
    flags: int | None = None
    fault_codes: tuple[int, ...] | None = ()
    quality: Quality = ()


_ALARM_HEAD: Final = Layout((Field("max_level", "B", hi=4), Field("flags", "I", sentinel=False)))


def _decode_alarm(buf: bytes, off: int, end: int) -> tuple[PackAlarm, int]:
    (level, flags), quality = _ALARM_HEAD.read(buf, off, end, "alarm")
    off += _ALARM_HEAD.size
    n, nq = read_count(buf, off, end, "B", "fault_count", 0, 252, "alarm")
    off += 1
    if n is None:
        return PackAlarm(level, flags, None, quality + nq), off
    need_items(off, n, 4, end, "alarm fault codes")
    codes = array_struct("I", n).unpack_from(buf, off)
    return PackAlarm(level, flags, codes, quality + nq), off + 4 * n


def _encode_alarm(rec: Any) -> bytes:
    head = _ALARM_HEAD.write([rec.max_level, rec.flags], rec.quality)
    if rec.fault_codes is None:
        return head + write_count("B", None, is_abnormal(rec.quality, "fault_count"))
    codes = rec.fault_codes
    return head + write_count("B", len(codes), False) + array_struct("I", len(codes)).pack(*codes)


ALARM_CODEC: Final = BlockCodec(PackAlarm, _decode_alarm, _encode_alarm)

_TYPES: Final = (
    (0x01, STATE_CODEC),
    (0x02, SITE_CODEC),
    (0x03, CELLS_CODEC),
    (0x04, PROBES_CODEC),
    (0x05, ALARM_CODEC),
)
# One profile, two envelopes: the same information types under "##" and "$$".
BATTERY: Final = Registry([(ed, t, c) for ed in (EDITION_2016, EDITION_2025) for t, c in _TYPES])
