"""What is wrong with a rule file: ``RuleProblem`` (line, rule, key, message) and the
``RuleFileError`` that carries all of them, so ``nev-ingest rules check`` shows every one."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RuleFileError", "RuleProblem"]


@dataclass(frozen=True, slots=True)
class RuleProblem:
    line: int | None
    rule: str | None  # rule id (or "#N" when the rule has no valid id yet)
    key: str | None
    message: str
    warning: bool = False

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        what = " ".join(
            x
            for x in (
                f"rule {self.rule}" if self.rule else "",
                f"key {self.key!r}" if self.key else "",
            )
            if x
        )
        level = "warning" if self.warning else "error"
        return f"{where}: {level}: {what + ': ' if what else ''}{self.message}"


class RuleFileError(ValueError):
    """A rule file with at least one error; ``problems`` lists them all (warnings too)."""

    def __init__(self, source: str, problems: list[RuleProblem]) -> None:
        self.source = source
        self.problems = problems
        errors = [p for p in problems if not p.warning]
        super().__init__(
            f"{len(errors)} error(s) in rule file {source}; first: {errors[0].format(source)}"
            if errors
            else f"rule file {source} has problems"
        )
