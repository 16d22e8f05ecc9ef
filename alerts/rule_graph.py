"""How the rules of one file refer to each other (composite rules name their parts): unknown or
self references, duplicate ids, cycles, and the evaluation order that puts every part before
the composites that use it."""

from __future__ import annotations

from collections.abc import Iterator

from alerts.model import Rule
from alerts.problems import RuleProblem

__all__ = ["check_references", "composite_parts", "evaluation_order", "in_cycle"]


def check_references(rules: list[Rule], out: list[RuleProblem]) -> None:
    by_id: dict[str, Rule] = {}
    for r in rules:
        if r.id in by_id:
            out.append(
                RuleProblem(r.line, r.id, "id", f"duplicate id (first at line {by_id[r.id].line})")
            )
        by_id.setdefault(r.id, r)
    referenced: set[str] = set()
    for r in rules:
        for sub in composite_parts(r):
            referenced.add(sub)
            if sub == r.id:
                out.append(
                    RuleProblem(
                        r.line, r.id, "all" if "all" in r.params else "any", "refers to itself"
                    )
                )
            elif sub not in by_id:
                out.append(
                    RuleProblem(
                        r.line,
                        r.id,
                        "all" if "all" in r.params else "any",
                        f"refers to unknown or disabled rule {sub!r}",
                    )
                )
            elif by_id[sub].entity != r.entity:
                # One engine per entity kind evaluates one entity's frames: it cannot see
                # another kind's rules.
                out.append(
                    RuleProblem(
                        r.line,
                        r.id,
                        "all" if "all" in r.params else "any",
                        f"refers to {sub!r}, a {by_id[sub].entity} rule: a composite combines "
                        f"rules of its own entity ({r.entity})",
                    )
                )
    for r in rules:
        if in_cycle(r.id, by_id, ()):
            out.append(RuleProblem(r.line, r.id, None, "composite conditions form a cycle"))
        if not r.alert and r.id not in referenced:
            out.append(
                RuleProblem(
                    r.line,
                    r.id,
                    "alert",
                    "alert = false and no composite uses it: it does nothing",
                    warning=True,
                )
            )


def composite_parts(rule: Rule) -> list[str]:
    return (
        list(rule.params.get("all", rule.params.get("any", []))) if rule.kind == "composite" else []
    )


def in_cycle(rid: str, by_id: dict[str, Rule], path: tuple[str, ...]) -> bool:
    if rid in path:
        return True
    rule = by_id.get(rid)
    return rule is not None and any(in_cycle(s, by_id, (*path, rid)) for s in composite_parts(rule))


def evaluation_order(rules: list[Rule]) -> list[Rule]:
    by_id = {r.id: r for r in rules}
    done: dict[str, Rule] = {}

    def visit(r: Rule) -> Iterator[Rule]:
        for s in composite_parts(r):
            if s not in done:
                yield from visit(by_id[s])
        if r.id not in done:
            done[r.id] = r
            yield r

    return [x for r in rules for x in visit(r)]
