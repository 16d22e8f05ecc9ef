# Type stub of the native extension (native/src/py.rs). The typed Python API is
# ingest.decoders.fast (and the charger / battery fast modules), which wrap these calls.

__version__: str
