# Type stub of the native extension (native/src/py.rs). The typed Python API is
# ingest.decoders.fast (and the charger / battery fast modules), which wrap these calls.

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.rows import FrameRows
from ingest.decoders.errors import FrameError

__version__: str
# native/src/error.rs: every reason a binary-profile decoder gives, and the blocks_per_frame limit.
FRAME_REASONS: list[str]
BLOCKS_PER_FRAME: int
CHARGER_BLOCKS_PER_FRAME: int

def decode_vehicle_batch(
    values: Iterable[bytes],
    received_ms: Sequence[int | None],
    limits: tuple[int, int, int, int, Callable[[str, int], FrameError]] | None = None,
) -> list[FrameRows | FrameError | None]:
    """Per value, in order: its rows (with ``copy``), a ``FrameError`` instance for a rejected
    frame, or None for a frame the structured decoder must take. One receive time (epoch ms,
    UTC; None: unknown) per value. Parses and encodes with the GIL released. ``limits``
    (motors, pack rows, cells, probes, over): a frame over one of these counts is not built;
    its item is ``over(limit name, count)``."""

def direct_layouts() -> list[tuple[str, bool]]:
    """Per contract class the decoders build: whether its instances are allocated and filled
    directly (native/src/py_alloc.rs) or, its layout not passing the checks, by Python calls."""

# The charger and battery-pack profiles (native/src/py_kinds.rs). None: the structured
# decoder judges the frame. Wrapped by ingest/decoders/charger/fast.py and battery/fast.py.
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

# nev-ingest decode's JSON (native/src/py_json.rs); None: use the reference decoder.
def vehicle_json(frame: bytes) -> bytes | None: ...

# Stream framing (src/framer.rs), wrapped by ingest.decoders.framer.NativeStreamFramer.
def frame_spans(buf: bytes, last: bool) -> tuple[int, list[tuple[int, int, int]]]: ...
def bench(what: str, frames: list[bytes], passes: int) -> float:
    """Seconds of ``passes`` native passes of ``what`` ("decode", "decode+encode", "json")
    over ``frames``, GIL released, no Python objects (loadtest/bench_native.py)."""

# Signatures (src/py_sig.rs). Statuses: ingest.pipeline.signatures.Status.
def verify_frames(frames: list[bytes], keys: list[tuple[int, bytes] | None], /) -> bytes:
    """One status byte per frame (ingest.pipeline.signatures.Status), GIL released."""

def verify_signature(
    key_algorithm: int, public_key: bytes, algorithm: int, signed: bytes, r: bytes, s: bytes, /
) -> int: ...
def check_key(algorithm: int, key: bytes, /) -> None: ...
def activation_key(frame: bytes, /) -> tuple[bytes, int, bytes, int] | None: ...

# The rule engine's per-frame loop (src/rules.rs, src/py_rules.rs), built by
# alerts/kinds_native.py; a Runner of alerts.fastpath.
RuleSpec = tuple[
    int, int, int, Any, list[float] | None, list[tuple[int, int, float]], list[int], list[float]
]

class RuleRunner:
    def __init__(
        self,
        spec: list[RuleSpec],
        nslots: int,
        nfields: int,
    ) -> None:
        """Per rule in evaluation order: (kind code, bit, pending slot or -1, CRule, scratch
        list, guards (position, op code, value), the kind's ints, its floats)."""
    def __call__(self, apply: Any, ent: Any, vals: tuple[Any, ...], t: int, vin: str, /) -> None:
        """Every rule over one in-order frame; ``apply(ent, cr, c, vals, t, vin)`` where the
        generated Python loop (alerts.fastpath) calls it."""
    def __len__(self) -> int: ...
