"""Two decisions both decoders apply the same way: 2016 RESS subsystem numbers keep 0xFE/0xFF
as numbers, and a 2025 real-time / reissue frame without its signature is flagged
(``signature_missing``, in the rows - the frame's and the vehicle row that stores it - and in the
JSON contract)."""

from __future__ import annotations

import pytest

from devtools.sim.framebuilder import TIME_HEX, block, build, decode_json
from ingest.decoders import decode_frame, encode_frame, frame_to_dict
from ingest.decoders.fast import decode_rows

pytestmark = pytest.mark.unit

SIGNATURE = "FF 02 0002 AABB 0000"


# --- 2016 RESS subsystem numbers: no sentinels (Tables B.6 and B.8) ------------------------


@pytest.mark.parametrize("number", [0xFE, 0xFF, 0x00, 0xFB])
def test_2016_subsystem_numbers_stay_numbers(number: int) -> None:
    n = f"{number:02X}"
    volts = block(2016, "08 01", n, "1B58 2710 0002 0001 02 0CE4 0CE0")["packs"][0]
    temps = block(2016, "09 01", n, "0002 41 40")["packs"][0]
    for pack in (volts, temps):
        assert pack["pack"] == number
        assert pack["quality"] == {"pack": "out_of_range"}
    frame = build(2016, 0x02, TIME_HEX, f"08 01 {n} 1B58 2710 0002 0001 02 0CE4 0CE0",
                  f"09 01 {n} 0002 41 40")  # fmt: skip
    (row,) = decode_rows(frame).packs  # joined by the number: one pack, as in the JSON
    assert (row.pack, row.cell_max_mv, row.probe_max_c) == (number, 3300, 25)


def test_2016_subsystem_numbers_reencode_as_sent() -> None:
    frame = build(2016, 0x02, TIME_HEX, "09 02 FE 0001 41 FF 0001 42")
    assert encode_frame(decode_frame(frame)) == frame


def test_2025_pack_numbers_keep_their_sentinels() -> None:
    # 2025 Tables 12/14 have the ordinary sentinels: null in the JSON, the raw key in the rows.
    pack = block(2025, "08 01 FE 0001 41")["packs"][0]
    assert (pack["pack"], pack["quality"]) == (None, {"pack": "abnormal"})
    (row,) = decode_rows(build(2025, 0x02, TIME_HEX, "08 01 FE 0001 41", SIGNATURE)).packs
    assert row.pack == 0xFE


# --- 2025 signature -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [0x02, 0x03])
def test_2025_data_without_signature_is_flagged(command: int) -> None:
    frame = build(2025, command, TIME_HEX, "04 0BB8")
    rows = decode_rows(frame)
    d = decode_json(frame)
    assert rows.signature_missing and d["signature_missing"] is True
    assert not rows.partial and not d["partial"]  # the data itself is whole: kept, flagged
    assert rows.vehicle is not None and rows.vehicle.signature_missing is True  # stored


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(build(2025, 0x02, TIME_HEX, "04 0BB8", SIGNATURE), id="signed"),
        pytest.param(
            build(2025, 0x02, TIME_HEX, "04 0BB8", "79 0002 0102", SIGNATURE),
            id="signed_after_unknown_type",
        ),
        pytest.param(build(2016, 0x02, TIME_HEX, "05 00 00000000 00000000"), id="2016"),
        pytest.param(build(2025, 0x02, TIME_HEX, response=0x01), id="2025_ack"),
        pytest.param(build(2025, 0x01, TIME_HEX, "0001" + "00" * 20 + "00"), id="2025_login"),
        pytest.param(build(2025, 0x02, TIME_HEX, "04 0BB8", encryption=0x03), id="encrypted"),
    ],
)
def test_other_frames_are_not_flagged(frame: bytes) -> None:
    rows = decode_rows(frame)
    assert not rows.signature_missing
    assert rows.vehicle is None or rows.vehicle.signature_missing is False
    assert frame_to_dict(decode_frame(frame))["signature_missing"] is False


def test_a_stopped_2025_walk_without_signature_is_flagged_and_partial() -> None:
    rows = decode_rows(build(2025, 0x02, TIME_HEX, "04 0BB8", "79 0002 0102"))
    assert rows.partial and rows.signature_missing
    assert rows.vehicle is not None and rows.vehicle.signature_missing
