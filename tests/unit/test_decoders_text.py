"""STRING fields (``ingest.decoders.text``): what a field's bytes become as text."""

from __future__ import annotations

import pytest

from ingest.decoders.text import decode_text, encode_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"89860012345678901234", "89860012345678901234"),
        (b"  ICCID\x00\x00\x00 ", "ICCID"),  # NUL and space padding, both sides
        (b"8986\x00012345678901234", "8986\ufffd012345678901234"),  # a NUL inside
        (b"8986\x00\x00\x00", "8986"),  # a C string's terminator is padding when only NULs follow
        ("站点".encode("gb18030") + b"\x00\x00", "站点"),
        ("站\x00点".encode("gb18030"), "站\ufffd点"),
        (b"\xffAB", "\ufffdAB"),  # not GB 18030 either: replaced, never raised
        (b"\x00" * 20, ""),
    ],
)
def test_decode_text(raw: bytes, want: str) -> None:
    # PostgreSQL refuses NUL in text: none may come out, or one frame fails a batch's COPY.
    assert decode_text(raw) == want
    assert "\x00" not in decode_text(raw)


def test_encode_text_pads_and_refuses_what_does_not_fit() -> None:
    assert decode_text(encode_text("站点", 20)) == "站点"
    with pytest.raises(ValueError, match="needs 21 bytes"):
        encode_text("x" * 21, 20)
