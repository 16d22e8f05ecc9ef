"""GB/T 34014 pack codes: good codes decode field by field, every broken rule is rejected with
its named reason and position, date codes round-trip, and vehicle RESS codes are classified
without changing what the vehicle decoder accepts."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.clock import CHINA_TZ
from ingest.decoders import Frame, Login, decode_frame, encode_frame
from ingest.decoders.fast import decode_rows
from ingest.decoders.pack_code import (
    PackCodeError,
    check_pack_code,
    classify_ress_codes,
    decode_pack_code,
    encode_date_code,
)

pytestmark = pytest.mark.unit

# manufacturer CAT, pack, ternary, spec A1, traceability TRACE01, 2024-03-15, serial 0000042
GOOD = "CATPEA1TRACE01E3F0000042"


def test_good_code_decodes_every_field() -> None:
    p = decode_pack_code(GOOD)
    assert p.manufacturer == "CAT"
    assert (p.product_type, p.product_type_name) == ("P", "pack")
    assert (p.battery_type, p.battery_type_name) == ("E", "ternary")
    assert p.spec == "A1"
    assert p.traceability == "TRACE01"
    assert p.production_date == date(2024, 3, 15)
    assert p.serial == "0000042"
    assert p.production_part == "TRACE01E3F0000042"
    assert len(p.production_part) == 17


@pytest.mark.parametrize(
    ("date_code", "expected"),
    [
        ("011", date(2010, 1, 1)),  # digits: 2010..2019
        ("9C9", date(2019, 12, 9)),
        ("A1A", date(2020, 1, 10)),  # first letter year, first letter day
        ("HBH", date(2027, 11, 17)),
        ("J1J", date(2028, 1, 18)),  # I skipped in years and days
        ("P5P", date(2033, 5, 23)),  # O skipped
        ("R1R", date(2034, 1, 24)),  # Q skipped
        ("E2W", date(2024, 2, 29)),  # a leap day
        ("YCY", date(2041, 12, 31)),  # the last code
    ],
)
def test_date_codes(date_code: str, expected: date) -> None:
    code = GOOD[:14] + date_code + GOOD[17:]
    assert decode_pack_code(code).production_date == expected
    assert encode_date_code(expected) == date_code


@pytest.mark.parametrize(
    ("code", "reason", "position"),
    [
        (GOOD[:23], "wrong_length", 0),
        (GOOD + "1", "wrong_length", 0),
        ("", "wrong_length", 0),
        ("cat" + GOOD[3:], "bad_character", 1),  # lower case
        (GOOD[:10] + " " + GOOD[11:], "bad_character", 11),
        (GOOD[:23] + "\x00", "bad_character", 24),
        (GOOD[:5] + "-" + GOOD[6:], "bad_character", 6),
        (GOOD[:3] + "X" + GOOD[4:], "bad_product_type", 4),
        (GOOD[:4] + "H" + GOOD[5:], "bad_battery_type", 5),
        (GOOD[:14] + "I3F" + GOOD[17:], "bad_date", 15),  # I is no year code
        (GOOD[:14] + "ED5" + GOOD[17:], "bad_date", 16),  # month D (13)
        (GOOD[:14] + "E0F" + GOOD[17:], "bad_date", 16),  # month 0
        (GOOD[:14] + "E30" + GOOD[17:], "bad_date", 17),  # day 0
        (GOOD[:14] + "E3Q" + GOOD[17:], "bad_date", 17),  # Q is no day code
        (GOOD[:14] + "D2W" + GOOD[17:], "bad_date", 17),  # 2023-02-29
        (GOOD[:14] + "E4Y" + GOOD[17:], "bad_date", 17),  # 2024-04-31
    ],
)
def test_bad_codes_are_rejected_with_reason(code: str, reason: str, position: int) -> None:
    with pytest.raises(PackCodeError) as info:
        decode_pack_code(code)
    assert info.value.reason == reason
    assert info.value.position == position
    assert check_pack_code(code) == reason
    assert check_pack_code(GOOD) is None


@given(st.dates(min_value=date(2010, 1, 1), max_value=date(2041, 12, 31)))
def test_every_date_round_trips(day: date) -> None:
    code = GOOD[:14] + encode_date_code(day) + GOOD[17:]
    assert decode_pack_code(code).production_date == day


def test_encode_date_code_refuses_years_without_code() -> None:
    with pytest.raises(ValueError, match=r"2010\.\.2041"):
        encode_date_code(date(2042, 1, 1))


def test_vehicle_ress_codes_are_classified_not_rejected() -> None:
    """A 2025 login with one good and one malformed code still decodes (the vehicle decoder's
    behaviour is unchanged); the helper says which code is what."""
    bad = GOOD[:14] + "D2W" + GOOD[17:]  # no such day
    login = Login(login_seq=3, iccid="89860000000000000001", pack_codes=(GOOD, bad))
    frame = Frame(
        edition=2025,
        command=0x01,
        vin="LNBSCU3H5JR000001",
        time=datetime(2025, 5, 6, 7, 8, 9, tzinfo=CHINA_TZ),
        body=Login(3, "89860000000000000001", (GOOD, bad), None, None, (2,)),
    )
    raw = encode_frame(frame)
    decoded = decode_frame(raw)
    assert isinstance(decoded.body, Login)
    assert decoded.body.pack_codes == login.pack_codes
    session = decode_rows(raw).session
    assert session is not None
    good_c, bad_c = classify_ress_codes(session.pack_codes)
    assert good_c.decoded is not None and good_c.decoded.serial == "0000042"
    assert good_c.reason is None
    assert (bad_c.decoded, bad_c.reason) == (None, "bad_date")
    # 2016 vendor codes of other lengths are classified, not decoded
    (short,) = classify_ress_codes(["RESS01"])
    assert short.reason == "wrong_length"
