"""Loading ``shared/protocol/vectors.jsonl`` and reading its sources' conventions.

The sources state values in their own names and units; these helpers turn them into the
semantics of the decode contract so the tests compare meaning, not formatting.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from loadtest.vectors import vectors_path

VECTORS_PATH = vectors_path()


# Vector index -> offset of the first non-VIN byte: SmallChi's synthetic vehicle login /
# logout command packets, whose ID is the JTNE test placeholder "123456789" padded with NULs.
# The decoders refuse them (bad_identity, ingest/decoders/identity.py).
NOT_A_VIN = {109: 13, 110: 13, 112: 13}


def load_vectors() -> list[dict[str, Any]]:
    """All vectors, each with its line number as ``index``."""
    if not VECTORS_PATH.exists():
        pytest.fail(f"{VECTORS_PATH} is missing: set NEV_VECTORS to the vectors.jsonl path")
    out = []
    for i, line in enumerate(VECTORS_PATH.read_text(encoding="utf-8").splitlines()):
        vec = json.loads(line)
        vec["index"] = i
        out.append(vec)
    return out


def rtm_value(text: Any) -> tuple[float | None, str | None]:
    """rtm_con's "12.2 km/h" / "6553.5 invalid" / "214 abnormal" / 5 -> (number, flag)."""
    if isinstance(text, int | float):
        return float(text), None
    parts = str(text).split()
    if len(parts) > 1 and parts[1] in ("invalid", "abnormal"):
        return None, parts[1]
    return float(parts[0]), None


def check_rtm(ours: Any, theirs: Any, quality: dict[str, str], field: str) -> None:
    """One rtm_con scalar against our value: sentinels as None (+ quality), numbers equal."""
    value, flag = rtm_value(theirs)
    if flag is not None:
        assert ours is None, f"{field}: rtm_con says {theirs!r}, we decoded {ours!r}"
        if flag == "abnormal":
            assert quality.get(field) == "abnormal", f"{field}: abnormal not flagged"
        return
    if ours is None:
        # rtm_con prints some raw integers (indices) without marking the sentinel.
        assert isinstance(theirs, int) and theirs in (0xFE, 0xFF, 0xFFFE, 0xFFFF), field
        return
    assert ours == pytest.approx(value, abs=1e-6), f"{field}: rtm_con {theirs!r}, ours {ours!r}"


def approx(a: Any, b: Any, tol: float = 1e-6) -> bool:
    """Float-tolerant equality (sources print 626.8000000000001)."""
    if a is None or b is None:
        return a is b
    return bool(abs(float(a) - float(b)) <= tol)
