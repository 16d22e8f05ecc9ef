"""Which codec reads which information type: keyed by (edition, type code).

The type codes 0x06..0x09 mean different blocks in 2016 and 2025, so the edition is part of
the key. A duplicate key is a programming error and fails at import (or when a fleet profile
is built), never a silent overwrite.

Entity kind is a dimension of the platform: ``REGISTRIES`` maps a kind to its registry. Only
vehicles speak GB/T 32960 today; a fleet whose terminals send non-standard blocks gets its
own registry via ``Registry.extended`` (e.g. the Shanghai buses' 0x81/0x82 blocks that lack
the WORD length).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from ingest.decoders.blocks import (
    alarm,
    cell_temperatures,
    cell_voltages,
    drive_motors,
    engine,
    extremes,
    fuel_cell,
    fuel_cell_stacks,
    position,
    super_capacitor,
    super_capacitor_extremes,
    vehicle,
)
from ingest.decoders.codec import BlockCodec
from ingest.decoders.fields import Record

__all__ = ["REGISTRIES", "VEHICLE", "Registry"]

Key = tuple[int, int]


class Registry:
    """An immutable (edition, type) -> ``BlockCodec`` table, plus the reverse lookup the
    encoder needs ((edition, record class) -> type code)."""

    __slots__ = ("_codecs", "_types")

    def __init__(self, entries: Iterable[tuple[int, int, BlockCodec]]) -> None:
        codecs: dict[Key, BlockCodec] = {}
        types: dict[tuple[int, type[Record]], int] = {}
        for edition, code, codec in entries:
            if (edition, code) in codecs:
                raise ValueError(f"duplicate block codec for edition {edition}, type {code:#04x}")
            codecs[(edition, code)] = codec
            if (edition, codec.record) in types:
                raise ValueError(f"{codec.record.__name__} registered twice for edition {edition}")
            types[(edition, codec.record)] = code
        self._codecs: Mapping[Key, BlockCodec] = codecs
        self._types: Mapping[tuple[int, type[Record]], int] = types

    def get(self, edition: int, code: int) -> BlockCodec | None:
        """The codec of a block type, or ``None`` when this registry does not know it."""
        return self._codecs.get((edition, code))

    def type_of(self, edition: int, record: Record) -> int:
        """The type code of a record in an edition; ``KeyError`` if it has none there."""
        return self._types[(edition, type(record))]

    def keys(self) -> list[Key]:
        """All (edition, type) keys, sorted."""
        return sorted(self._codecs)

    def extended(self, entries: Iterable[tuple[int, int, BlockCodec]]) -> Registry:
        """A new registry with more entries; clashing with an existing key is an error."""
        return Registry([(e, c, codec) for (e, c), codec in self._codecs.items()] + list(entries))


VEHICLE: Final = Registry(
    [
        # 2016: GB/T 32960.3-2016 Table 8 and Annex B (0x08/0x09 voltages/temperatures)
        (2016, 0x01, vehicle.CODEC_2016),
        (2016, 0x02, drive_motors.CODEC_2016),
        (2016, 0x03, fuel_cell.CODEC_2016),
        (2016, 0x04, engine.CODEC_2016),
        (2016, 0x05, position.CODEC_2016),
        (2016, 0x06, extremes.CODEC_2016),
        (2016, 0x07, alarm.CODEC_2016),
        (2016, 0x08, cell_voltages.CODEC_2016),
        (2016, 0x09, cell_temperatures.CODEC_2016),
        # 2025: GB/T 32960.3-2025 Table 9 (renumbered; extremes removed)
        (2025, 0x01, vehicle.CODEC_2025),
        (2025, 0x02, drive_motors.CODEC_2025),
        (2025, 0x03, fuel_cell.CODEC_2025),
        (2025, 0x04, engine.CODEC_2025),
        (2025, 0x05, position.CODEC_2025),
        (2025, 0x06, alarm.CODEC_2025),
        (2025, 0x07, cell_voltages.CODEC_2025),
        (2025, 0x08, cell_temperatures.CODEC_2025),
        (2025, 0x30, fuel_cell_stacks.CODEC_2025),
        (2025, 0x31, super_capacitor.CODEC_2025),
        (2025, 0x32, super_capacitor_extremes.CODEC_2025),
    ]
)

REGISTRIES: Final[Mapping[str, Registry]] = {"vehicle": VEHICLE}
