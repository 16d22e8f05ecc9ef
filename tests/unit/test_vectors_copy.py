"""The repo's copy of the public vectors must equal ``shared/protocol/vectors.jsonl``."""

from __future__ import annotations

import pytest

from loadtest.vectors import REPO_COPY, SHARED

pytestmark = pytest.mark.unit


def test_repo_copy_matches_shared() -> None:
    if not SHARED.exists():
        # Outside this workspace there is no shared/ beside the clone; the copy is the truth.
        assert REPO_COPY.exists()
        return
    assert REPO_COPY.read_bytes() == SHARED.read_bytes(), (
        f"{REPO_COPY} differs from {SHARED}: copy the shared file over and re-run the tests"
    )
