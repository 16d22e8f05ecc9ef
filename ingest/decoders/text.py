"""STRING fields of GB/T 32960.3 (Table 1 of both editions): fixed width, ASCII or GB 18030.

In the wild the padding is NUL or space, and a platform user name may be Chinese (GB 18030), so
a field is decoded as bytes first: padding stripped, ASCII tried, GB 18030 as the fallback.
A NUL left inside (firmware that writes a C string, its terminator and then what its buffer
held) becomes U+FFFD like any other corrupt byte: PostgreSQL refuses NUL in text, and one such
field would otherwise fail the COPY of every batch it is in.
"""

from __future__ import annotations

__all__ = ["decode_text", "encode_text"]

_PAD = b"\x00 "


def decode_text(raw: bytes | bytearray | memoryview) -> str:
    """A STRING field as text: surrounding NULs and spaces stripped, ASCII or else GB 18030.

    Never raises: bytes that are not GB 18030 either, and NULs inside, become U+FFFD, so a
    corrupt field cannot reject an otherwise good frame.
    """
    b = bytes(raw).strip(_PAD)
    try:
        text = b.decode("ascii")
    except UnicodeDecodeError:
        text = b.decode("gb18030", errors="replace")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def encode_text(text: str, width: int | None = None) -> bytes:
    """``text`` as STRING bytes (ASCII, else GB 18030), NUL-padded to ``width`` when given.

    Raises ``ValueError`` when the text does not fit: the encoder serves tests and the load
    generator, where silent truncation would hide a bug.
    """
    try:
        b = text.encode("ascii")
    except UnicodeEncodeError:
        b = text.encode("gb18030")
    if width is None:
        return b
    if len(b) > width:
        raise ValueError(f"{text!r} needs {len(b)} bytes, the field has {width}")
    return b.ljust(width, b"\x00")
