"""``BudgetedLog``: refusal WARNING lines of all peers within one budget, the lines held back
reported as one line when the interval ends (a timer) or when its owner closes it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ingest.gateway.log_budget import BudgetedLog
from tests.unit.log_support import line_seen

pytestmark = pytest.mark.unit

_LOGGER = "tests.log_budget"


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == _LOGGER]


async def test_lines_past_the_budget_are_one_line_when_the_interval_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    warnings = BudgetedLog(logging.getLogger(_LOGGER), "test", 3, 10.0, clock=lambda: now[0])
    with (
        line_seen(_LOGGER, "refusal lines from") as reported,
        caplog.at_level(logging.WARNING, logger=_LOGGER),
    ):
        taken = [warnings.warning(f"192.0.2.{i % 200}", "line %d", i) for i in range(1000)]
        assert taken == [True] * 3 + [False] * 997
        now[0] = 9.99  # the held-back lines' line is due in 0.01 s on this loop
        warnings.warning("198.51.100.1", "held back too")
        await asyncio.wait_for(reported.wait(), 30)
        now[0] = 10.0  # the next interval: lines get through again
        assert warnings.warning("198.51.100.1", "next interval")
        warnings.close()  # nothing held back since: no line
    assert _messages(caplog) == [
        "line 0",
        "line 1",
        "line 2",
        "test: suppressed 998 refusal lines from 201 peers (at most 3 lines per 10 s; the "
        "metrics count every refusal)",
        "next interval",
    ]
    summary = next(r for r in caplog.records if "suppressed" in r.getMessage())
    assert summary.__dict__["suppressed_lines"] == 998
    assert summary.__dict__["suppressed_peers"] == 201


async def test_close_reports_the_lines_held_back_and_leaves_no_timer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warnings = BudgetedLog(logging.getLogger(_LOGGER), "test", 1, 3600.0)
    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        for i in range(5):
            warnings.warning(f"2001:db8:0:{i:x}::/64", "line %d", i, extra={"reason": "x"})
        assert warnings._report is not None  # due in an hour
        timer = warnings._report
        warnings.close()
        assert timer.cancelled()
        warnings.warning("2001:db8:1::/64", "after close")  # held back, no timer set
        assert warnings._report is None
    assert _messages(caplog) == [
        "line 0",
        "test: suppressed 4 refusal lines from 4 peers (at most 1 lines per 3600 s; the "
        "metrics count every refusal)",
    ]
    assert getattr(caplog.records[0], "reason", None) == "x"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        warnings.close()  # another close reports what was held back since
    assert _messages(caplog)[0].startswith("test: suppressed 1 refusal lines from 1 peers")


def test_a_line_held_back_counts_the_lines_it_stood_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A gate per peer lets a peer's first line of an interval through carrying the lines it
    # held back in the last one (held_back=49: 50 refusals). Held back by the budget too, that
    # line is the only report of all 50: the summary counted it as 1.
    warnings = BudgetedLog(logging.getLogger(_LOGGER), "test", 1, 3600.0)
    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        assert warnings.warning("192.0.2.2", "takes the budget")
        assert not warnings.warning("192.0.2.1", "garbage", held_back=49)
        assert not warnings.warning("192.0.2.3", "garbage")  # held_back 0: counts as 1
        warnings.close()
    assert _messages(caplog)[1].startswith("test: suppressed 51 refusal lines from 2 peers")
    summary = next(r for r in caplog.records if "suppressed" in r.getMessage())
    assert summary.__dict__["suppressed_lines"] == 51
