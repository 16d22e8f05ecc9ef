"""GB/T 34014-2017 traction-battery codes (汽车动力蓄电池编码): validate and decode, pure.

A code is 24 characters, digits and upper-case letters, in two parts (Tables 1 and 2 of the
standard; sources and the choices made where they are silent: docs/protocols/battery.md):

    pos    len  field                  allowed here
    1-3    3    manufacturer code      0-9 A-Z (assigned by the registration system)
    4      1    product type           P pack, M module, C cell
    5      1    battery type           A NiMH, B LFP, C LMO, D LCO, E NCM/NCA, F super-capacitor,
                                       G LTO, Z other
    6-7    2    specification code     0-9 A-Z (registered per manufacturer)
    8-14   7    traceability code      0-9 A-Z (registered per manufacturer)
    15-17  3    production date        year, month, day codes (below)
    18-24  7    serial number          0-9 A-Z

Date codes: year ``0``-``9`` = 2010-2019, then ``A``-``Y`` without I, O, Q = 2020-2041;
month ``1``-``9``, ``A`` ``B`` ``C`` = 1-12; day ``1``-``9``, then ``A``-``Y`` without I, O, Q
= 10-31. The date must exist (no 30 February). The standard defines no check digit, so none is
verified. A code that breaks a rule raises ``PackCodeError`` with a stable ``reason``.

``classify_ress_codes`` applies this to the RESS codes vehicles report at login, without
changing what the vehicle decoder accepts (2016 codes may be any length: they are only
classified).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Final, NamedTuple

from ingest.decoders.errors import (
    BAD_BATTERY_TYPE,
    BAD_CHARACTER,
    BAD_DATE,
    BAD_PRODUCT_TYPE,
    PACK_CODE_REASONS,
    WRONG_LENGTH,
)

__all__ = [
    "BATTERY_TYPES",
    "CODE_LENGTH",
    "PACK_CODE_REASONS",
    "PRODUCT_TYPES",
    "PackCode",
    "PackCodeError",
    "RessCode",
    "check_pack_code",
    "classify_ress_codes",
    "decode_pack_code",
    "encode_date_code",
]

CODE_LENGTH: Final = 24

# The stable reasons (WRONG_LENGTH ... BAD_DATE, PACK_CODE_REASONS) live with the decoders'
# others in errors.py ("GB/T 34014 pack codes").
PRODUCT_TYPES: Final = {"P": "pack", "M": "module", "C": "cell"}
BATTERY_TYPES: Final = {
    "A": "nimh",  # 镍氢
    "B": "lfp",  # 磷酸铁锂
    "C": "lmo",  # 锰酸锂
    "D": "lco",  # 钴酸锂
    "E": "ternary",  # 三元材料 (NCM / NCA)
    "F": "supercapacitor",  # 超级电容器
    "G": "lto",  # 钛酸锂
    "Z": "other",  # 其他
}

_ALLOWED: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Letters that follow the digits in the year and day codes: I, O and Q are left out (they read
# as 1, 0 and 0), as in the VIN year code.
_LETTERS: Final = "ABCDEFGHJKLMNPRSTUVWXY"
_YEARS: Final = {c: 2010 + i for i, c in enumerate("0123456789" + _LETTERS)}
_MONTHS: Final = {c: i + 1 for i, c in enumerate("123456789ABC")}
_DAYS: Final = {c: i + 1 for i, c in enumerate("123456789" + _LETTERS)}
_YEAR_CODE: Final = {v: k for k, v in _YEARS.items()}
_MONTH_CODE: Final = {v: k for k, v in _MONTHS.items()}
_DAY_CODE: Final = {v: k for k, v in _DAYS.items()}


class PackCodeError(ValueError):
    """A code that is no GB/T 34014 code: ``reason`` (one of ``PACK_CODE_REASONS``),
    ``position`` (1-based character position of the fault, 0 for the length)."""

    __slots__ = ("detail", "position", "reason")

    def __init__(self, reason: str, position: int, detail: str) -> None:
        super().__init__(f"{reason} at position {position}: {detail}")
        self.reason = reason
        self.position = position
        self.detail = detail


class PackCode(NamedTuple):
    """A decoded code; the name fields are this project's (English) names of the codes."""

    code: str
    manufacturer: str  # 1-3
    product_type: str  # 4: P / M / C
    battery_type: str  # 5: A-G / Z
    spec: str  # 6-7
    traceability: str  # 8-14
    production_date: date  # 15-17
    serial: str  # 18-24

    @property
    def product_type_name(self) -> str:
        return PRODUCT_TYPES[self.product_type]

    @property
    def battery_type_name(self) -> str:
        return BATTERY_TYPES[self.battery_type]

    @property
    def production_part(self) -> str:
        """Positions 8-24 (traceability, date, serial): the 17 characters the battery
        profile's header ID carries (docs/protocols/battery.md, "Identity")."""
        return self.code[7:]


def decode_pack_code(code: str) -> PackCode:
    """The fields of ``code``, or ``PackCodeError``. No padding is stripped: callers decide."""
    if len(code) != CODE_LENGTH:
        raise PackCodeError(WRONG_LENGTH, 0, f"{len(code)} characters, a code has 24")
    for i, ch in enumerate(code):
        if ch not in _ALLOWED:
            raise PackCodeError(
                BAD_CHARACTER, i + 1, f"{ch!r}: a code is digits and upper-case letters"
            )
    if code[3] not in PRODUCT_TYPES:
        raise PackCodeError(BAD_PRODUCT_TYPE, 4, f"{code[3]!r} is not P (pack), M or C")
    if code[4] not in BATTERY_TYPES:
        raise PackCodeError(BAD_BATTERY_TYPE, 5, f"{code[4]!r} is not A-G or Z")
    return PackCode(
        code, code[0:3], code[3], code[4], code[5:7], code[7:14], _date(code), code[17:24]
    )


def check_pack_code(code: str) -> str | None:
    """``None`` for a good code, else its reason (for quality flags; never raises)."""
    try:
        decode_pack_code(code)
    except PackCodeError as exc:
        return exc.reason
    return None


def encode_date_code(day: date) -> str:
    """The 3-character date code of ``day`` (2010-01-01 .. 2041-12-31), for tests and sims."""
    try:
        return _YEAR_CODE[day.year] + _MONTH_CODE[day.month] + _DAY_CODE[day.day]
    except KeyError:
        raise ValueError(f"{day}: the year code covers 2010..2041") from None


def _date(code: str) -> date:
    y, m, d = code[14], code[15], code[16]
    year, month, day = _YEARS.get(y), _MONTHS.get(m), _DAYS.get(d)
    if year is None:
        raise PackCodeError(BAD_DATE, 15, f"year code {y!r} (0-9, A-Y without I O Q)")
    if month is None:
        raise PackCodeError(BAD_DATE, 16, f"month code {m!r} (1-9, A-C)")
    if day is None:
        raise PackCodeError(BAD_DATE, 17, f"day code {d!r} (1-9, A-Y without I O Q)")
    try:
        return date(year, month, day)
    except ValueError:
        raise PackCodeError(BAD_DATE, 17, f"{year}-{month:02d}-{day:02d} is no date") from None


class RessCode(NamedTuple):
    """One RESS code of a vehicle login: ``decoded`` when it is a GB/T 34014 code, else
    ``reason`` says why not (``wrong_length`` for the 2016 vendor codes of other lengths)."""

    code: str
    decoded: PackCode | None
    reason: str | None


def classify_ress_codes(codes: Iterable[str]) -> tuple[RessCode, ...]:
    """Validate / decode the pack codes of a vehicle login (``Login.pack_codes`` or
    ``SessionRow.pack_codes``). Informative only: the vehicle decoder's accept / reject
    behaviour does not depend on it, a vehicle with a bad code still logs in."""
    out = []
    for code in codes:
        try:
            out.append(RessCode(code, decode_pack_code(code), None))
        except PackCodeError as exc:
            out.append(RessCode(code, None, exc.reason))
    return tuple(out)
