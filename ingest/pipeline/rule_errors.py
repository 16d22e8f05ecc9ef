"""What the rule engine's safety net caught (alerts/failure.py), made visible to ops: the
``nev_ingest_rule_errors_total{kind, rule}`` counter, every failure counted, and one ERROR line
per (entity kind, rule) per interval, with how many it held back (a broken rule on a million
frames must not flood the log). docs/operations.md says what to do about it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from alerts.failure import UNKNOWN, RuleFailure
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.metrics import PipelineMetrics

__all__ = ["INTERVAL_S", "RuleErrors"]

log = logging.getLogger(__name__)

# One line per (kind, rule) per minute: the counter has the rate.
INTERVAL_S: Final = 60.0


class RuleErrors:
    """Reports the failures the engines counted since the last report (``RuleEngine
    .take_failures``)."""

    def __init__(self, metrics: PipelineMetrics, limiter: RateLimiter | None = None) -> None:
        self._metrics = metrics
        self._limiter = limiter or RateLimiter(INTERVAL_S)

    def show(self, kind: str, rule_ids: Iterable[str]) -> None:
        """Every (kind, rule) series from 0 on, ``unknown`` too: a series that first appears
        at 1 is no ``increase()`` to Prometheus, and NevIngestRuleErrors would miss the first
        failure of a rule."""
        for rule in (*rule_ids, UNKNOWN):
            self._metrics.rule_errors.labels(kind=kind, rule=rule)

    def report(self, kind: str, failures: Iterable[RuleFailure]) -> None:
        for f in failures:
            self._metrics.rule_errors.labels(kind=kind, rule=f.rule_id).inc(f.count)
            held = self._limiter.allow(f"{kind}:{f.rule_id}")
            if held is None:
                continue
            rule = "an unknown rule" if f.rule_id == UNKNOWN else f"rule {f.rule_id!r}"
            log.error(
                "judging a frame raised in %s (%s entity %s): %s; the frame's rows are stored, "
                "its verdicts for that entity skipped, the worker goes on. Fix or disable the "
                "rule (rules file, then SIGHUP) and file a bug with this line",
                rule,
                kind,
                f.entity_id,
                f.error,
                extra={
                    "kind": kind,
                    "rule": f.rule_id,
                    "entity_id": f.entity_id,
                    "error_type": f.error_type,
                    "error": f.error,
                    "count": f.count,
                    "suppressed": held,
                },
            )
