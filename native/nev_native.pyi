# Type stub of the native extension (native/src/py.rs). The typed Python API is
# ingest.decoders.fast (and the charger / battery fast modules), which wrap these calls.

from collections.abc import Iterable, Sequence

from contract.rows import FrameRows
from ingest.decoders.errors import FrameError

__version__: str

def decode_vehicle_batch(
    values: Iterable[bytes], received_ms: Sequence[int | None]
) -> list[FrameRows | FrameError | None]:
    """Per value, in order: its rows (with ``copy``), a ``FrameError`` instance for a rejected
    frame, or None for a frame the structured decoder must take. One receive time (epoch ms,
    UTC; None: unknown) per value. Parses and encodes with the GIL released."""
