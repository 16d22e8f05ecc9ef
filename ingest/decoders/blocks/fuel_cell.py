"""Fuel cell: 2016 type 0x03 (Table 12, 18 + N bytes); 2025 type 0x03 "fuel-cell engine and
on-board hydrogen system" (Table 17, 12 bytes). Stack voltage/current/probes moved to 0x30.

    field                           type      2016                        2025
    voltage_v                       WORD      0..20000, 0.1 V             — (0x30)
    current_a                       WORD      0..20000, 0.1 A             — (0x30)
    fuel_rate_kg_per_100km          WORD      0..60000, 0.01 kg/100 km    —
    probe_count + probe_temps_c     WORD + N  temps 0..240, -40 °C,       —
                                              no sentinels in the text
    h2_max_temp_c                   WORD      0..2400, 0.1 °C, -40 °C     0..250, 1 °C, -40 °C
    h2_max_temp_probe               BYTE      1..252                      1..253
    h2_max_concentration_mg_per_kg  WORD      0..60000 mg/kg              —
    h2_max_concentration_pct        WORD      —                           0..60000, 0.0001 % vol
    h2_concentration_sensor         BYTE      1..252                      1..253
    h2_max_pressure_mpa             WORD      0..1000, 0.1 MPa (no        0..1000, 0.1 MPa
                                              sentinels)
    h2_pressure_sensor              BYTE      1..252                      1..253
    dcdc_state                      BYTE      0x01 working, 0x02 off
    h2_remaining_pct                BYTE      —                           0..100 %
    dcdc_temp_c                     BYTE      —                           0..250, -40 °C
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ingest.decoders.codec import (
    BlockCodec,
    fixed_codec,
    is_abnormal,
    read_counted,
    write_counted,
)
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2016", "CODEC_2025", "FuelCell"]


@dataclass(frozen=True, slots=True)
class FuelCell(Record):
    """The fuel-cell block; fields of the other edition are ``None``."""

    name: ClassVar[str] = "fuel_cell"
    voltage_v: float | None = None
    current_a: float | None = None
    fuel_rate_kg_per_100km: float | None = None
    probe_temps_c: tuple[int, ...] | None = None
    h2_max_temp_c: float | None = None
    h2_max_temp_probe: int | None = None
    h2_max_concentration_mg_per_kg: int | None = None
    h2_max_concentration_pct: float | None = None
    h2_concentration_sensor: int | None = None
    h2_max_pressure_mpa: float | None = None
    h2_pressure_sensor: int | None = None
    dcdc_state: int | None = None
    h2_remaining_pct: int | None = None
    dcdc_temp_c: int | None = None
    quality: Quality = ()


HEAD_2016: Final = Layout(
    (
        Field("voltage_v", "H", div=10, hi=20_000),
        Field("current_a", "H", div=10, hi=20_000),
        Field("fuel_rate_kg_per_100km", "H", div=100, hi=60_000),
    )
)
TAIL_2016: Final = Layout(
    (
        Field("h2_max_temp_c", "H", div=10, sub=400, hi=2400),
        Field("h2_max_temp_probe", "B", lo=1, hi=252),
        Field("h2_max_concentration_mg_per_kg", "H", hi=60_000),
        Field("h2_concentration_sensor", "B", lo=1, hi=252),
        Field("h2_max_pressure_mpa", "H", div=10, hi=1000, sentinel=False),
        Field("h2_pressure_sensor", "B", lo=1, hi=252),
        Field("dcdc_state", "B", lo=1, hi=2),
    )
)
LAYOUT_2025: Final = Layout(
    (
        Field("h2_max_temp_c", "H", sub=40, hi=250),
        Field("h2_max_temp_probe", "B", lo=1, hi=253),
        Field("h2_max_concentration_pct", "H", div=10_000, hi=60_000),
        Field("h2_concentration_sensor", "B", lo=1, hi=253),
        Field("h2_max_pressure_mpa", "H", div=10, hi=1000),
        Field("h2_pressure_sensor", "B", lo=1, hi=253),
        Field("dcdc_state", "B", lo=1, hi=2),
        Field("h2_remaining_pct", "B", hi=100),
        Field("dcdc_temp_c", "B", sub=40, hi=250),
    )
)


def decode_2016(buf: bytes, off: int, end: int) -> tuple[FuelCell, int]:
    head, q1 = HEAD_2016.read(buf, off, end, "fuel_cell")
    off += HEAD_2016.size
    count = ("H", "probe_temps_c", 0, 65_531, "fuel_cell")
    # No sentinels in the probe list (Table 12): 0xFE/0xFF are temperatures.
    probes = read_counted(buf, off, end, count, ("B", 1, 40), "fuel_cell probes", sentinel=False)
    temps, q2, off = probes.values, probes.quality, probes.end
    tail, q3 = TAIL_2016.read(buf, off, end, "fuel_cell")
    off += TAIL_2016.size
    kw: dict[str, Any] = dict(zip(HEAD_2016.names, head, strict=True))
    kw.update(zip(TAIL_2016.names, tail, strict=True))
    return FuelCell(**kw, probe_temps_c=temps, quality=q1 + q2 + q3), off


def encode_2016(rec: Any) -> bytes:
    q = rec.quality
    head = HEAD_2016.write([getattr(rec, n) for n in HEAD_2016.names], q)
    abnormal = is_abnormal(q, "probe_temps_c")
    probes = write_counted("H", rec.probe_temps_c, abnormal, ("B", 1, 40))
    return head + probes + TAIL_2016.write([getattr(rec, n) for n in TAIL_2016.names], q)


CODEC_2016: Final = BlockCodec(FuelCell, decode_2016, encode_2016)
CODEC_2025: Final = fixed_codec(LAYOUT_2025, FuelCell, "fuel_cell")
