"""The rule engine's safety net: a frame whose judging raised costs that frame's verdicts for
its entity, never the worker (docs/alerts.md, "When a rule raises").

An exception out of ``RuleEngine.evaluate`` would end the batch's write; it is no transient
error, so the worker stops, and on every restart the same frame is read again and raises
again: the partition, and every partition of the worker, blocked for good. So the engine
catches what judging one frame raises (``caught``), finds the rule that raised where it can
tell exactly (``failing_rule``), and counts it here (``Failures``); the pipeline drains the
counts into ``nev_ingest_rule_errors_total`` and a rate-limited ERROR line
(ingest/pipeline/storage_sink.py). Pure: nothing here logs.

Which rule raised is read from the traceback, on the error path only (the hot loop pays
nothing): the ``cr`` of the engine's ``_apply`` / ``_late`` frames (a rule's lifecycle, the late
path's closures), the line of the generated loop (alerts.fastpath: one line per rule call),
the ``nev_rule`` the native runner tags its errors with (native/src/py_rules.rs). What is left
(the extractor, a plan's construction, a Rust panic) is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

__all__ = ["UNKNOWN", "Failures", "RuleFailure", "caught", "failing_rule"]

# The rule label of a failure whose rule cannot be told exactly.
UNKNOWN: Final = "unknown"
# The engine's methods whose local ``cr`` is the rule being judged or applied.
_RULE_FRAMES: Final = frozenset({"_apply", "_hold", "_clear", "_raise", "_late"})
# The generated loop's file name (alerts.fastpath) and the map it keeps of line -> rule.
GENERATED: Final = "<alerts.fastpath>"
LINES: Final = "_RULE_AT_LINE"
# What the native runner tags an error of a rule's condition with.
NATIVE_TAG: Final = "nev_rule"


def caught(exc: BaseException) -> bool:
    """Whether the safety net takes ``exc``: any ``Exception``, and a Rust panic (pyo3's
    ``PanicException`` is a ``BaseException``); never KeyboardInterrupt, SystemExit or the
    like, which must stop the process, nor a MemoryError, which is the process's state, not
    the frame's (the worker's restart is the answer to it)."""
    if isinstance(exc, MemoryError):
        return False
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def failing_rule(exc: BaseException) -> Any | None:
    """The ``CRule`` whose judging raised ``exc``, or None when that cannot be told exactly."""
    tagged = getattr(exc, NATIVE_TAG, None)
    if tagged is not None:
        return tagged
    found = None
    tb: TracebackType | None = exc.__traceback__
    # The deepest match: the rule being judged where it raised.
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        if code.co_filename == GENERATED:
            found = frame.f_globals.get(LINES, {}).get(tb.tb_lineno, found)
        elif code.co_name in _RULE_FRAMES and code.co_filename.endswith("engine.py"):
            found = frame.f_locals.get("cr", found)
        tb = tb.tb_next
    return found


@dataclass(slots=True)
class RuleFailure:
    """A rule's (or the unknown rule's) failures since the pipeline last took them: how many,
    and the last one's entity and error."""

    rule_id: str
    count: int
    entity_id: str
    error: str  # "ExceptionType: message", cut to 300 characters

    @property
    def error_type(self) -> str:
        return self.error.partition(":")[0]


class Failures:
    """Per rule id (or ``UNKNOWN``), the failures not yet taken."""

    __slots__ = ("_by_rule",)

    def __init__(self) -> None:
        self._by_rule: dict[str, RuleFailure] = {}

    def add(self, rule_id: str, entity_id: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"[:300]
        f = self._by_rule.get(rule_id)
        if f is None:
            self._by_rule[rule_id] = RuleFailure(rule_id, 1, entity_id, error)
        else:
            f.count += 1
            f.entity_id, f.error = entity_id, error

    def take(self) -> list[RuleFailure]:
        out = list(self._by_rule.values())
        self._by_rule.clear()
        return out
