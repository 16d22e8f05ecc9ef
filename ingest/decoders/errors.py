"""The one exception the decoders raise: ``FrameError``, with a stable machine-readable reason;
and ``REASONS``, every reason the decoders name."""

from __future__ import annotations

from typing import Final

# Stable reasons: storage, the dead-letter topic, metrics labels and tools depend on these strings.
BAD_START: Final = "bad_start"  # first two bytes are neither "##" (2016) nor "$$" (2025)
TRUNCATED: Final = "truncated"  # fewer bytes than the header or a field needs
LENGTH_MISMATCH: Final = "length_mismatch"  # frame size disagrees with the data-unit length
BAD_CHECKSUM: Final = "bad_checksum"  # BCC (XOR of bytes 2..end-1) differs from the last byte
UNKNOWN_COMMAND: Final = "unknown_command"  # command byte the decoder has no layout for
BAD_FIELD: Final = "bad_field"  # a field's value makes the rest undecodable (count overrun, ...)
BAD_IDENTITY: Final = (
    "bad_identity"  # the 17-byte unique ID is no VIN / printable code (identity.py)
)
COUNT_MISMATCH: Final = (
    "count_mismatch"  # a motor / pack count disagrees with the blocks (counts.py)
)
# An input limit the decoders apply themselves: ``blocks_per_frame`` (realtime.BLOCKS_PER_FRAME;
# the pipeline's other limits, ingest.config.limits, use the same reason after decoding).
OVER_LIMIT: Final = "over_limit"
# Not a decoder's: the signature policy's (ingest.pipeline.signatures, docs/security.md). A
# 2025 frame whose signature does not verify, or whose VIN has no key, under
# security.signatures = reject. The decoders themselves never check signatures.
BAD_SIGNATURE: Final = "bad_signature"
# A data unit encrypted with RSA / AES / SM2 / SM4 (header byte 0x02-0x05): the cipher mode, IV
# and padding are not in the transcription (docs/security.md), so it is kept in the dead-letter
# topic, intact, for a replay once decryption exists, instead of being consumed unread.
ENCRYPTED_UNSUPPORTED: Final = "encrypted_unsupported"

# The binary profiles (vehicle, charger, battery pack): the envelope and the frame's fields.
FRAME_REASONS: Final = frozenset(
    {
        BAD_START,
        TRUNCATED,
        LENGTH_MISMATCH,
        BAD_CHECKSUM,
        UNKNOWN_COMMAND,
        BAD_FIELD,
        BAD_IDENTITY,
        COUNT_MISMATCH,
        OVER_LIMIT,
    }
)

# T/CEC 102 pushes (nev.charger.tcec, ``charger.tcec``); they also use ``bad_field`` (a value of
# the wrong type or size). Offset 0, or the JSON error's position for ``bad_json``.
BAD_JSON: Final = "bad_json"  # not JSON, or not a JSON object
UNKNOWN_INTERFACE: Final = "unknown_interface"  # an interface name the decoder does not read
MISSING_FIELD: Final = "missing_field"  # a field the standard requires is absent or null
BAD_CODE: Final = "bad_code"  # an enumerated field outside the standard's codes
BAD_TIME: Final = "bad_time"  # a time that is not "yyyy-MM-dd HH:mm:ss" (or ends before it starts)
TCEC_REASONS: Final = frozenset({BAD_JSON, UNKNOWN_INTERFACE, MISSING_FIELD, BAD_CODE, BAD_TIME})

# GB/T 34014 pack codes (``pack_code.PackCodeError.reason``). A pack frame whose code breaks a
# rule is rejected as ``bad_identity`` (the code is its identity, as the VIN is a vehicle's),
# the detail naming one of these; they are the reasons of ``check_pack_code`` and of the RESS
# codes vehicles report at login (``classify_ress_codes``), which are kept, not rejected.
WRONG_LENGTH: Final = "wrong_length"  # not 24 characters
BAD_CHARACTER: Final = "bad_character"  # anything but 0-9 A-Z (lower case, space, NUL, ...)
BAD_PRODUCT_TYPE: Final = "bad_product_type"  # position 4 not P / M / C
BAD_BATTERY_TYPE: Final = "bad_battery_type"  # position 5 not A-G / Z
BAD_DATE: Final = "bad_date"  # positions 15-17 no date code, or no such day
PACK_CODE_REASONS: Final = frozenset(
    {WRONG_LENGTH, BAD_CHARACTER, BAD_PRODUCT_TYPE, BAD_BATTERY_TYPE, BAD_DATE}
)

# Every stable reason of the decoders: what docs list and metrics label (docs/kafka.md).
REASONS: Final = FRAME_REASONS | TCEC_REASONS | PACK_CODE_REASONS


class FrameError(ValueError):
    """A frame or push the decoder rejects. ``reason`` is one of ``FRAME_REASONS`` (binary
    profiles) or ``TCEC_REASONS`` / ``bad_field`` (T/CEC pushes); ``offset`` is the byte
    offset in the frame where decoding failed; ``detail`` is for people."""

    __slots__ = ("detail", "offset", "reason")

    def __init__(self, reason: str, offset: int, detail: str = "") -> None:
        super().__init__(f"{reason} at byte {offset}" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.offset = offset
        self.detail = detail
