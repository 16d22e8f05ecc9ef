"""The battery-pack profile of ``nev.battery.raw`` (docs/protocols/battery.md): GB/T 32960.3's
envelope with the full GB/T 34014 pack code and pack-state information types. Pure, sans-I/O.

    decode_pack_frame(bytes) -> PackFrame      structured records; raises only FrameError
    encode_pack_frame(PackFrame) -> bytes      the inverse (tests, load generator)
    decode_pack_rows(bytes) -> PackFrameRows   the fast path to ``contract.battery`` rows
    decode_pack_rows_batch(values, received_ms) the same for a batch (one native call)
    pack_frame_to_dict / pack_frame_to_json    the JSON view

The pack-code rules are ``ingest.decoders.pack_code``.
"""

from __future__ import annotations

from ingest.decoders.battery.blocks import (
    ALARM_FLAGS,
    BATTERY,
    PackAlarm,
    PackCells,
    PackProbes,
    PackState,
    Site,
    alarm_flag_names,
)
from ingest.decoders.battery.encoder import encode_pack_frame, pack_ident
from ingest.decoders.battery.fast import (
    decode_pack_rows,
    decode_pack_rows_batch,
    rows_of_pack_frame,
)
from ingest.decoders.battery.frame import PackFrame, PackLogin, PackLogout, decode_pack_frame
from ingest.decoders.battery.jsonview import (
    pack_code_to_dict,
    pack_frame_to_dict,
    pack_frame_to_json,
)

__all__ = [
    "ALARM_FLAGS",
    "BATTERY",
    "PackAlarm",
    "PackCells",
    "PackFrame",
    "PackLogin",
    "PackLogout",
    "PackProbes",
    "PackState",
    "Site",
    "alarm_flag_names",
    "decode_pack_frame",
    "decode_pack_rows",
    "decode_pack_rows_batch",
    "encode_pack_frame",
    "pack_code_to_dict",
    "pack_frame_to_dict",
    "pack_frame_to_json",
    "pack_ident",
    "rows_of_pack_frame",
]
