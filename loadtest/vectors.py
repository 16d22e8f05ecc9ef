"""Where the public GB/T 32960 test frames are: one answer for tests, fuzzing and benchmarks.

The repo keeps a copy of ``shared/protocol/vectors.jsonl`` in ``tests/golden/`` so a clone
outside this workspace still tests; ``tests/unit/test_vectors_copy.py`` fails when the copy and
``../shared`` drift apart. ``NEV_VECTORS`` points everything at another file (e.g. a newer
collection of real frames).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPO_COPY = REPO / "tests" / "golden" / "vectors.jsonl"
SHARED = REPO.parent / "shared" / "protocol" / "vectors.jsonl"


def vectors_path() -> Path:
    """``$NEV_VECTORS`` when set, else the repo's copy."""
    return Path(os.environ.get("NEV_VECTORS", REPO_COPY))
