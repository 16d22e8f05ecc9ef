# Type stub of the native extension (native/src/py.rs). The typed Python API is
# ingest.decoders.fast (and the charger / battery fast modules), which wrap these calls.

__version__: str

# The charger and battery-pack profiles (native/src/py_kinds.rs). None: the structured
# decoder judges the frame. Wrapped by ingest/decoders/charger/fast.py and battery/fast.py.
from collections.abc import Sequence
from datetime import datetime

from contract.battery import PackFrameRows
from contract.charger import ChargerRows

def decode_charger_batch(
    values: Sequence[bytes], received_ms: Sequence[int]
) -> list[ChargerRows | None]: ...
def decode_charger(frame: bytes, received_at: datetime | None) -> ChargerRows | None: ...
def decode_pack_batch(
    values: Sequence[bytes], received_ms: Sequence[int]
) -> tuple[list[PackFrameRows | None], list[int]]: ...
def decode_pack(
    frame: bytes, received_at: datetime | None, trusted: bool = False
) -> tuple[PackFrameRows, bool] | None: ...
