"""The public JSON contract of a decoded frame (docs/protocols/gbt32960.md).

``frame_to_dict`` turns a ``Frame`` into plain JSON types (str keys, ints, floats, strings,
lists, dicts, ``None``); ``frame_to_json`` / ``error_to_json`` serialise with orjson. The
names are a contract that storage, alerts, regulators and tools rely on: add fields, never
rename. Record fields map one to one onto JSON names; ``bytes`` fields become ``<name>_hex``;
each record's ``quality`` becomes a ``{field: "abnormal" | "out_of_range"}`` object.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Final

import orjson

from ingest.decoders.blocks.alarm import Alarm, alarm_names
from ingest.decoders.blocks.custom import CustomBlock
from ingest.decoders.blocks.vehicle import Vehicle, gear_info
from ingest.decoders.commands.control import CONTROL_COMMANDS, Control
from ingest.decoders.commands.params import Param, param_name
from ingest.decoders.errors import FrameError
from ingest.decoders.fields import Record
from ingest.decoders.frame import COMMANDS, Frame
from ingest.decoders.native import nev_native
from ingest.decoders.registry import VEHICLE, Registry
from ingest.decoders.signature import SIGNATURE_ALGORITHMS, Signature

__all__ = [
    "RESPONSE_NAMES",
    "error_to_dict",
    "error_to_json",
    "fast_frame_json",
    "frame_to_dict",
    "frame_to_json",
]

RESPONSE_NAMES: Final = {
    0x01: "success",
    0x02: "error",
    0x03: "vin_duplicate",
    0x04: "vin_unknown",  # 2025
    0x05: "signature_error",  # 2025
    0x06: "structure_error",  # 2025
    0x07: "decryption_error",  # 2025
    0xFE: "command",
}
_REALTIME: Final = (0x02, 0x03)
_FIELDS: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _FIELDS[cls] = names
    return names


def _value(v: Any, edition: int) -> Any:
    if isinstance(v, Record):
        return record_to_dict(v, edition)
    if isinstance(v, tuple):
        return [_value(x, edition) for x in v]
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def record_to_dict(rec: Record, edition: int) -> dict[str, Any]:
    """A record's JSON object: its fields, plus the derived names of the contract."""
    out: dict[str, Any] = {}
    for name in _names(type(rec)):
        v = getattr(rec, name)
        if name == "quality":
            out["quality"] = dict(v)
        elif isinstance(v, bytes):
            out[f"{name}_hex"] = v.hex()
        elif v is None and name in _BYTES_FIELDS:
            out[f"{name}_hex"] = None
        else:
            out[name] = _value(v, edition)
    _extra(rec, edition, out)
    return out


_BYTES_FIELDS: Final = frozenset({"address"})  # Optional bytes fields (Upgrade.address)


def _extra(rec: Record, edition: int, out: dict[str, Any]) -> None:
    if isinstance(rec, Vehicle) and rec.gear is not None:
        out.update(gear_info(rec.gear, edition))
    elif isinstance(rec, Alarm):
        out["general_alarms"] = alarm_names(rec.general_flags, edition)
        if rec.bit_levels is not None:
            out["bit_levels"] = [
                {"bit": b.bit, "level": b.level, "alarm": _bit_name(b.bit, edition)}
                for b in rec.bit_levels
            ]
    elif isinstance(rec, Param):
        out["name"] = param_name(edition, rec.id)
    elif isinstance(rec, Signature):
        out["algorithm_name"] = SIGNATURE_ALGORITHMS.get(rec.algorithm, "reserved")
    elif isinstance(rec, Control):
        out["command_name"] = CONTROL_COMMANDS.get(rec.command_id, "reserved")
        upgrade = rec.upgrade
        out["upgrade"] = None if upgrade is None else record_to_dict(upgrade, edition)
        alarm = rec.alarm
        out["alarm"] = None if alarm is None else {"level": alarm[0], "info": alarm[1]}


def _bit_name(bit: int, edition: int) -> str:
    names = alarm_names(1 << bit, edition) if 0 <= bit < 32 else []
    return names[0] if names else f"bit_{bit}"


def block_to_dict(rec: Record, edition: int, registry: Registry = VEHICLE) -> dict[str, Any]:
    """An information block: ``type`` and ``name`` first, then the record's fields."""
    if isinstance(rec, CustomBlock):
        return {"type": rec.type, "name": rec.name, "data_hex": rec.data.hex()}
    out: dict[str, Any] = {"type": registry.type_of(edition, rec), "name": rec.name}
    out.update(record_to_dict(rec, edition))
    return out


def frame_to_dict(frame: Frame, registry: Registry = VEHICLE) -> dict[str, Any]:
    """The public JSON object of a decoded frame."""
    ed = frame.edition
    spec = COMMANDS[ed].get(frame.command)
    out: dict[str, Any] = {
        "edition": ed,
        "command": frame.command,
        "command_name": frame.command_name,
        "response": frame.response,
        "response_name": RESPONSE_NAMES.get(frame.response, "reserved"),
        "vin": frame.vin,
        "encryption": frame.encryption,
        "encrypted": frame.encrypted,
        "time": None if frame.time is None else frame.time.isoformat(),
        "ts_ms": frame.ts_ms,
    }
    if frame.body is not None and spec is not None and spec.key is not None:
        out[spec.key] = record_to_dict(frame.body, ed)
    if frame.command in _REALTIME:
        out["blocks"] = [block_to_dict(b, ed, registry) for b in frame.blocks]
    if frame.signature is not None:
        sig = record_to_dict(frame.signature, ed)
        out["signature"] = sig
    out["partial"] = frame.partial
    out["signature_missing"] = frame.signature_missing
    out["tail_hex"] = None if frame.tail is None else frame.tail.hex()
    out["tail_reason"] = frame.tail_reason
    out["tail_offset"] = frame.tail_offset
    return out


def error_to_dict(err: FrameError) -> dict[str, Any]:
    """The JSON object of a rejected frame: ``{"error": {"reason", "offset", "detail"}}``."""
    return {"error": {"reason": err.reason, "offset": err.offset, "detail": err.detail}}


def frame_to_json(frame: Frame, registry: Registry = VEHICLE) -> bytes:
    """``frame_to_dict`` serialised (UTF-8 JSON, one line)."""
    return orjson.dumps(frame_to_dict(frame, registry))


def fast_frame_json(data: bytes) -> bytes | None:
    """``frame_to_json(decode_frame(data))`` written by the native decoder for a real-time /
    reissue command packet with a plain data unit (the same bytes: tests/unit/
    test_native_json.py); ``None`` for any other frame or a rejected one: use the reference.
    """
    return nev_native.vehicle_json(data)


def error_to_json(err: FrameError) -> bytes:
    """``error_to_dict`` serialised."""
    return orjson.dumps(error_to_dict(err))
