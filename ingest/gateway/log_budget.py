"""Refusal WARNING lines about many peers within one budget for all of them, and the one line
that says what the budget held back.

A gate per peer (``limits.LogGate``, ``tcec.peer_limits.PeerLog``) bounds one peer's lines,
not those of many: one host owns many peers' worth of addresses (a /48 holds 65,536 /64s; a
botnet, many IPv4 addresses), so one line per peer was still one line per connection or
request. The TCP listeners' refusals, the T/CEC receiver's connection gate and its refused
requests each log through one of these, after their gate per peer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from ingest.gateway.limits import LogBudget

__all__ = ["BudgetedLog"]


class BudgetedLog:
    """At most ``lines`` WARNING lines per ``interval_s`` through ``logger``, all peers
    together. Past them a line is held back and counted; one line "``what``: suppressed M
    refusal lines from K peers" reports them when the interval ends (a timer on the running
    loop) or at ``close``, which the owner calls when it stops, so that no timer outlives it."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        lines: int,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._budget = LogBudget(lines, interval_s, clock)
        self._report: asyncio.TimerHandle | None = None  # the held-back lines' line, due
        self._closed = False

    def warning(
        self,
        peer: str,
        msg: str,
        *args: object,
        extra: Mapping[str, object] | None = None,
        held_back: int = 0,
    ) -> bool:
        """Log ``msg % args`` (with ``extra``) within the budget; False: held back, counted
        against ``peer`` (as the gate per peer keys it: an IPv6 peer by its /64).
        ``held_back``: the lines the gate per peer held back before this one, which this
        line reports; held back itself, it counts as 1 + those in the summary, else the
        summary would say 1 where the gate had held back 49 more."""
        if self._budget.take(peer, 1 + held_back):
            self._log.warning(msg, *args, extra=extra, stacklevel=2)
            return True
        if self._report is None and not self._closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False  # a caller outside any loop (a test): reported at close
            self._report = loop.call_later(self._budget.ends_in(), self._report_held)
        return False

    def _report_held(self) -> None:
        self._report = None
        lines, peers = self._budget.held()
        if lines:
            self._log.warning(
                "%s: suppressed %d refusal lines from %d%s peers (at most %d lines per %g s; "
                "the metrics count every refusal)",
                self._what,
                lines,
                peers,
                "+" if peers >= LogBudget.MAX_PEERS else "",
                self._budget.lines,
                self._budget.interval_s,
                extra={"suppressed_lines": lines, "suppressed_peers": peers},
            )

    def close(self) -> None:
        """The owner stopped: what the budget held back is logged now, not by a timer that
        would outlive it. Lines held back after this set no timer (the loop may be going
        away); another ``close`` reports them."""
        self._closed = True
        if self._report is not None:
            self._report.cancel()
        self._report_held()
