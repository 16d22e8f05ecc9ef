"""/readyz when the workers' metric files cannot be read (a read failing twice: out of file
descriptors, an I/O error): a clear 503 saying why, and its normal answer once they read again.

Before, the scrape's ``ScrapeError`` escaped the readiness check and the probe got a 500 "internal
error": nothing said whether the service was ready, nor what to look at."""

from __future__ import annotations

import os

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration


async def test_a_metric_file_not_read_answers_503_with_the_reason(env: PipelineEnv) -> None:
    files = env.tmp / "metrics"
    async with ps.serving(env, "readyz-read", NEV_METRICS_MULTIPROC_DIR=str(files)) as svc:
        # A *.db name the scrape lists, whose read fails every time with an OSError (EISDIR),
        # as an open fails with EMFILE: the same path as a read of the moment failing twice.
        blocker = files / "counter_1.db"
        os.mkdir(blocker)
        try:
            assert svc.readyz() == 503, svc.tail()
            body = svc.readyz_body()
        finally:
            os.rmdir(blocker)
        assert body["ready"] is False
        assert "cannot read counter_1.db" in body["reason"], body
        assert [w["problems"] for w in body["workers"]] == [["metric files not read"]], body

        async def ready_again() -> bool:
            return svc.readyz() == 200

        await ps.until(ready_again, timeout_s=30, what="/readyz to answer 200 again")
    said = [r for r in svc.logs() if r.get("msg", "").startswith("/readyz answers 503")]
    assert len(said) == 1, svc.tail()
    assert not [r for r in svc.logs() if r.get("msg") == "metrics endpoint failed"]
