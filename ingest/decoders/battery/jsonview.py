"""The JSON view of a pack frame (docs/protocols/battery.md, "JSON view"): the vehicle
contract's conventions (``ingest.decoders.jsonview``: records, ``quality``, ``_hex``), with
``ident``, ``pack_code`` and the decoded code instead of ``vin``."""

from __future__ import annotations

from typing import Any

import orjson

from ingest.decoders.battery.blocks import BATTERY, PackAlarm, alarm_flag_names
from ingest.decoders.battery.frame import PackFrame
from ingest.decoders.jsonview import RESPONSE_NAMES, block_to_dict, record_to_dict
from ingest.decoders.pack_code import decode_pack_code

__all__ = ["pack_code_to_dict", "pack_frame_to_dict", "pack_frame_to_json"]


def pack_code_to_dict(code: str) -> dict[str, Any]:
    """The fields of a valid GB/T 34014 code (raises ``PackCodeError`` otherwise)."""
    p = decode_pack_code(code)
    return {
        "code": p.code,
        "manufacturer": p.manufacturer,
        "product_type": p.product_type,
        "product_type_name": p.product_type_name,
        "battery_type": p.battery_type,
        "battery_type_name": p.battery_type_name,
        "spec": p.spec,
        "traceability": p.traceability,
        "production_date": p.production_date.isoformat(),
        "serial": p.serial,
    }


def pack_frame_to_dict(frame: PackFrame) -> dict[str, Any]:
    """The JSON object of a decoded pack frame."""
    ed = frame.edition
    out: dict[str, Any] = {
        "profile": "battery",
        "edition": ed,
        "command": frame.command,
        "command_name": frame.command_name,
        "response": frame.response,
        "response_name": RESPONSE_NAMES.get(frame.response, "reserved"),
        "ident": frame.ident,
        "encryption": frame.encryption,
        "encrypted": frame.encrypted,
        "time": None if frame.time is None else frame.time.isoformat(),
        "ts_ms": frame.ts_ms,
        "pack_code": frame.pack_code,
        "pack": None if frame.pack_code is None else pack_code_to_dict(frame.pack_code),
    }
    if frame.body is not None:
        out[frame.body.name] = record_to_dict(frame.body, ed)
    if frame.command in (0x02, 0x03) and frame.pack_code is not None:
        blocks = []
        for b in frame.blocks:
            d = block_to_dict(b, ed, BATTERY)
            if isinstance(b, PackAlarm):
                d["alarms"] = alarm_flag_names(b.flags)
            blocks.append(d)
        out["blocks"] = blocks
    if frame.signature is not None:
        out["signature"] = record_to_dict(frame.signature, ed)
    out["partial"] = frame.partial
    out["tail_hex"] = None if frame.tail is None else frame.tail.hex()
    out["tail_reason"] = frame.tail_reason
    out["tail_offset"] = frame.tail_offset
    return out


def pack_frame_to_json(frame: PackFrame) -> bytes:
    """``pack_frame_to_dict`` serialised (UTF-8 JSON, one line)."""
    return orjson.dumps(pack_frame_to_dict(frame))
