"""/readyz when the workers' metric files cannot be read (a read failing twice: out of file
descriptors, an I/O error).

Readiness reads the gauge files alone: a counter file not read fails a /metrics scrape, not
/readyz. A gauge file not read at one probe answers from the last good read (a few seconds
old), saying so; one whose reads keep failing answers a clear 503 saying why, and the normal
answer once it reads again. Before, the scrape's ``ScrapeError`` escaped the readiness check (a
500 "internal error"), then any file not read, a counter's too, answered 503 at once: a failed
probe for one read of the moment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

# A *.db name the scrape lists, whose read fails every time with an OSError (EISDIR), as an
# open fails with EMFILE: the same path as a read of the moment failing twice. The workers'
# gauges are livesum and livemax files; pid 1 is no worker's.
GAUGE_FILE = "gauge_livesum_1.db"


@contextlib.contextmanager
def _unreadable(path: Path) -> Iterator[None]:
    """``path`` a directory while the block runs: every read of it fails (EISDIR)."""
    os.mkdir(path)
    try:
        yield
    finally:
        os.rmdir(path)


async def test_a_metric_file_not_read_answers_503_with_the_reason(env: PipelineEnv) -> None:
    files = env.tmp / "metrics"
    async with ps.serving(env, "readyz-read", NEV_METRICS_MULTIPROC_DIR=str(files)) as svc:
        with _unreadable(files / GAUGE_FILE):

            async def not_ready() -> bool:
                # the last good read answers a few seconds more, then the failure is said
                return svc.readyz() == 503

            await ps.until(not_ready, timeout_s=60, what="/readyz to answer 503", every_s=1)
            body = svc.readyz_body()
        assert body["ready"] is False
        assert f"cannot read {GAUGE_FILE}" in body["reason"], body
        assert [w["problems"] for w in body["workers"]] == [["metric files not read"]], body

        async def ready_again() -> bool:
            return svc.readyz() == 200

        await ps.until(ready_again, timeout_s=30, what="/readyz to answer 200 again")
    said = [r for r in svc.logs() if r.get("msg", "").startswith("/readyz answers 503")]
    assert len(said) == 1, svc.tail()
    assert not [r for r in svc.logs() if r.get("msg") == "metrics endpoint failed"]


async def test_one_read_failing_answers_from_the_last_good_read(env: PipelineEnv) -> None:
    files = env.tmp / "metrics"
    async with ps.serving(env, "readyz-once", NEV_METRICS_MULTIPROC_DIR=str(files)) as svc:
        # a counter file readiness does not use: /readyz does not read it at all
        with _unreadable(files / "counter_1.db"):
            body = svc.readyz_body()
        assert body["ready"] is True and "read_error" not in body, body

        async def ready() -> bool:
            return bool(svc.readyz_body().get("ready"))

        await ps.until(ready, timeout_s=30, what="/readyz to be ready")  # a good read, just now
        with _unreadable(files / GAUGE_FILE):
            body = svc.readyz_body()
        # ready, from the read of a moment ago, saying which read failed
        assert body["ready"] is True, body
        assert f"cannot read {GAUGE_FILE}" in body["read_error"], body
        assert "gauges_age_s" in body and "reason" not in body, body
        body = svc.readyz_body()
        assert body["ready"] is True and "read_error" not in body, body
    assert not [r for r in svc.logs() if r.get("msg", "").startswith("/readyz answers 503")]
