"""The compiled hot path, the ``nev_native`` extension module (native/, Rust + PyO3), imported
in one place so that a checkout or an install without it fails with one line that says what
to do, instead of a bare ``No module named 'nev_native'``."""

from __future__ import annotations

try:
    import nev_native
except ImportError as exc:  # pragma: no cover - only without the built extension
    raise ImportError(
        "nev-ingest's native decoder (the nev_native module) is not installed: run ./dev setup "
        "in the checkout (it builds native/ with Rust: https://rustup.rs), or install the wheel "
        "built from native/ (pip install ./native)"
    ) from exc

__all__ = ["nev_native"]
