"""GB/T 32960.3 codec, both editions (2016 "##", 2025 "$$"): pure, sans-I/O.

    decode_frame(bytes) -> Frame          structured records; raises only FrameError
    encode_frame(Frame) -> bytes          the inverse (load generator, tests, responses)
    frame_to_dict / frame_to_json         the public JSON contract (docs/protocols/gbt32960.md)
    StreamFramer                          whole frames out of a TCP byte stream

The fast path for the pipeline (bytes -> flat rows) is ``ingest.decoders.fast``; the row
contract is ``contract.rows``.
"""

from __future__ import annotations

from ingest.decoders.blocks.alarm import Alarm, BitLevel
from ingest.decoders.blocks.cell_temperatures import CellTemperatures, TemperaturePack
from ingest.decoders.blocks.cell_voltages import CellVoltages, VoltagePack
from ingest.decoders.blocks.custom import CustomBlock
from ingest.decoders.blocks.drive_motors import DriveMotors, Motor
from ingest.decoders.blocks.engine import Engine
from ingest.decoders.blocks.extremes import Extremes
from ingest.decoders.blocks.fuel_cell import FuelCell
from ingest.decoders.blocks.fuel_cell_stacks import FuelCellStacks, Stack
from ingest.decoders.blocks.position import Position
from ingest.decoders.blocks.super_capacitor import SuperCapacitor
from ingest.decoders.blocks.super_capacitor_extremes import SuperCapacitorExtremes
from ingest.decoders.blocks.vehicle import Vehicle
from ingest.decoders.commands.activation import Activation, ActivationResponse, KeyExchange
from ingest.decoders.commands.control import Control, Upgrade
from ingest.decoders.commands.login import Login
from ingest.decoders.commands.params import Param, ParamList, QueryRequest
from ingest.decoders.commands.session import Logout, PlatformLogin
from ingest.decoders.encoder import encode_block, encode_body, encode_frame, make_response
from ingest.decoders.errors import FrameError
from ingest.decoders.frame import Frame, decode_frame
from ingest.decoders.framer import RawFrame, Skipped, StreamFramer
from ingest.decoders.jsonview import error_to_dict, frame_to_dict, frame_to_json
from ingest.decoders.signature import Signature

__all__ = [
    "Activation",
    "ActivationResponse",
    "Alarm",
    "BitLevel",
    "CellTemperatures",
    "CellVoltages",
    "Control",
    "CustomBlock",
    "DriveMotors",
    "Engine",
    "Extremes",
    "Frame",
    "FrameError",
    "FuelCell",
    "FuelCellStacks",
    "KeyExchange",
    "Login",
    "Logout",
    "Motor",
    "Param",
    "ParamList",
    "PlatformLogin",
    "Position",
    "QueryRequest",
    "RawFrame",
    "Signature",
    "Skipped",
    "Stack",
    "StreamFramer",
    "SuperCapacitor",
    "SuperCapacitorExtremes",
    "TemperaturePack",
    "Upgrade",
    "Vehicle",
    "VoltagePack",
    "decode_frame",
    "encode_block",
    "encode_body",
    "encode_frame",
    "error_to_dict",
    "frame_to_dict",
    "frame_to_json",
    "make_response",
]
