"""The rule and alert data model: what a rule file declares and what the engine emits.

Rules are immutable specs (``Rule``) produced by the loader; the engine compiles them. Alerts
leave the engine as ``AlertChange`` values carrying an ``AlertRecord`` snapshot. Times are epoch
milliseconds (UTC) of the frames' own event time: the engine never reads the clock, so a replay
produces exactly the same alerts (and the same database keys) as the first run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "CHANGE_TYPES",
    "KINDS",
    "SEVERITIES",
    "AlertChange",
    "AlertRecord",
    "ChangeType",
    "Guard",
    "Rule",
    "Scope",
]

# Ordered from least to most urgent; `alerts list --severity` and metrics labels use these.
SEVERITIES: Final = ("info", "warning", "major", "critical")
KINDS: Final = (
    "threshold",
    "rate",
    "spread",
    "drop",
    "jump",
    "flag",
    "insulation",
    "composite",
    "ratio",
    "flip",
)
ChangeType = Literal["raised", "updated", "cleared"]
CHANGE_TYPES: Final = ("raised", "updated", "cleared")


@dataclass(frozen=True, slots=True)
class Scope:
    """Which entities a rule applies to: all (both empty), or any VIN prefix / vehicle model."""

    vin_prefixes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    @property
    def is_all(self) -> bool:
        return not self.vin_prefixes and not self.models

    def matches(self, entity_id: str, model: str | None) -> bool:
        if self.is_all:
            return True
        if self.vin_prefixes and entity_id.startswith(self.vin_prefixes):
            return True
        return model is not None and model in self.models


@dataclass(frozen=True, slots=True)
class Guard:
    """A precondition: the rule is evaluated only on frames where ``field op value`` holds.

    A frame failing a guard is "not applicable": it neither fires nor clears the rule and does
    not feed its history (e.g. a pack-voltage drop rule guarded by ``vehicle_state == 1``).
    """

    field: str
    op: str
    value: float


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a rule file, parameters resolved (``$name`` replaced by its value)."""

    id: str
    kind: str
    severity: str
    title: str
    source: str  # where the threshold comes from (standard clause, OEM parameter)
    params: dict[str, Any]  # kind-specific, validated by the loader
    alert: bool = True  # False: a named condition for composites, never an alert itself
    scope: Scope = field(default_factory=Scope)
    editions: tuple[int, ...] = (2016, 2025)
    guards: tuple[Guard, ...] = ()
    for_s: float = 0.0  # must hold this long (event time) before firing
    for_frames: int = 0  # ... or this many consecutive frames
    clear_for_s: float = 0.0  # must stop holding this long before clearing (debounce)
    clear_for_frames: int = 0
    line: int | None = None  # where the rule starts in its file, for messages
    version: str = ""  # short hash of the resolved definition: stored with every alert
    entity: str = "vehicle"  # the entity kind it is for (contract.kinds): its field table

    @property
    def is_stateless(self) -> bool:
        """True when one frame alone decides the condition (no history, no duration).

        Only such rules look at late frames (see ``RuleEngine``): their verdict does not depend
        on the order frames arrive in.
        """
        if self.for_s or self.for_frames > 1 or self.guards:
            return False
        if self.kind in ("threshold", "spread", "insulation"):
            return True
        return self.kind == "flag" and self.params.get("edge", "level") == "level"


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A snapshot of one alert: what the ``alerts`` table row and the published message hold."""

    entity_kind: str
    entity_id: str
    rule_id: str
    rule_version: str
    severity: str
    title: str
    opened_ms: int  # event time of the frame that raised it (part of the alert's identity)
    last_seen_ms: int  # event time of the latest frame on which the condition held
    cleared_ms: int | None
    peak: float | None  # most extreme value while open (max, or min for "below" rules)
    last_value: float | None
    frame_count: int  # frames on which the condition held while open
    trigger_ms: tuple[int, ...]  # event times of the frames that made it fire
    late: bool = False  # raised from a late (reissued) frame
    # Kafka partition of the frame that raised it, for rebuild on assignment: that partition's
    # owner restores it (docs/alerts.md, "Partitions and kinds")
    partition: int | None = None
    clear_reason: str | None = None  # "condition" | "rule_removed" | "rule_out_of_scope"
    # Kafka topic of that partition: chargers come on two topics whose numbers coincide
    topic: str | None = None
    peak_is_max: bool = True  # the rule's peak is its maximum (False: "below" rules)

    @property
    def key(self) -> str:
        """Stable identity across replays: what the database's unique key is made of."""
        return f"{self.entity_kind}/{self.entity_id}/{self.rule_id}/{self.opened_ms}"

    @property
    def is_open(self) -> bool:
        return self.cleared_ms is None


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One lifecycle event of one alert, as produced by ``RuleEngine.evaluate``.

    Per call at most one ``updated`` per alert (coalesced), and ``raised`` before ``cleared``
    when both happen in the same batch.
    """

    type: ChangeType
    alert: AlertRecord
