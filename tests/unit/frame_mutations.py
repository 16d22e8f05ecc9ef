"""Byte mutations of encoded frames for the fast-path agreement tests of the charger and pack
profiles: a few bytes set, cut or inserted, then (half the time) the length and BCC fixed so
that the mutation reaches the block walk instead of stopping at the checksum."""

from __future__ import annotations

from hypothesis import strategies as st

from ingest.decoders.checksum import bcc

__all__ = ["mutate", "reseal"]


def reseal(data: bytes | bytearray) -> bytes:
    """``data`` with the header's data-unit length and the BCC made to fit its size."""
    out = bytearray(data)
    if len(out) >= 25:
        out[22:24] = min(len(out) - 25, 0xFFFF).to_bytes(2, "big")
        out[-1] = bcc(out, 2, len(out) - 1)
    return bytes(out)


def mutate(raw: bytes, data: st.DataObject, first: int = 24) -> bytes:
    """1..4 mutations at offsets from ``first`` on (24: the data unit; 0: the header too)."""
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        if len(buf) <= first + 1:
            break
        at = data.draw(st.integers(first, len(buf) - 1), label="at")
        kind = data.draw(st.sampled_from(["set", "cut", "insert"]), label="kind")
        if kind == "set":
            values = [0, 1, 0x05, 0x7F, 0x80, 0xFE, 0xFF, data.draw(st.integers(0, 255))]
            buf[at] = data.draw(st.sampled_from(values), label="value")
        elif kind == "cut":
            del buf[at : at + data.draw(st.integers(1, 8), label="cut")]
        else:
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=8), label="inserted")
    return reseal(buf) if data.draw(st.booleans(), label="reseal") else bytes(buf)
