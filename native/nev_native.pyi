# Type stub of the native extension (native/src/py.rs). The typed Python API is
# ingest.decoders.fast (and the charger / battery fast modules), which wrap these calls.

__version__: str

def vehicle_json(frame: bytes) -> bytes | None: ...  # n6: py_json.rs
