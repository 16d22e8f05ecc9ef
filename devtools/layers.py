"""The layers of the source tree, and a check that every import points downwards.

Each layer is a set of rooms (module prefixes); a module may import its own room and any room
of a lower layer, never a room of its own layer or above. Imports are read from the source
(``ast``), including those under ``if TYPE_CHECKING:`` and inside functions, so a cycle or an
upward arrow cannot hide from the check. docs/architecture.md draws the same table.

    python -m devtools.layers          # prints each violation and cycle; exit 1 if any
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["LAYERS", "Violation", "check", "cycles", "imports_of", "room_of"]

# Bottom up. A room is a package or module prefix; rooms of one layer are siblings that must
# not import each other (storage and alerts are peers; neither builds on the other).
LAYERS: Final[tuple[tuple[str, ...], ...]] = (
    # The row contract, entity kinds, the clock; user errors; and the bare ``ingest`` package,
    # so that a new module at its root is held to the bottom layer until it gets a room.
    ("contract", "ingest.errors", "ingest"),
    ("ingest.decoders", "ingest.config"),  # pure codecs; settings, fields, loading, docs
    ("storage", "alerts"),  # the database layer; the rule engine (both take typed params)
    ("ingest.wiring",),  # settings -> client parameters for everyone above
    ("ingest.pipeline",),  # the service
    ("ingest.gateway",),  # the front doors (TCP, T/CEC 102 HTTP) -> Kafka; uses pipeline.wire
    ("ingest.cli",),  # the commands (one module each)
    ("ingest.__main__",),  # python -m ingest
    ("devtools",),  # dev stack, demo, load generator, simulators: never shipped
    ("loadtest",),  # benchmarks and fuzzers
    ("tests",),
)
PACKAGES: Final = ("contract", "ingest", "storage", "alerts", "devtools", "loadtest", "tests")


@dataclass(frozen=True, slots=True)
class Violation:
    """``importer`` (in ``path`` at ``line``) imports ``imported``, which it must not."""

    path: str
    line: int
    importer: str
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported} ({self.why})"


def room_of(module: str) -> tuple[int, str] | None:
    """(layer index, room) of a module: the longest matching prefix; None if outside."""
    best: tuple[int, str] | None = None
    for level, rooms in enumerate(LAYERS):
        for room in rooms:
            if (module == room or module.startswith(room + ".")) and (
                best is None or len(room) > len(best[1])
            ):
                best = (level, room)
    return best


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute or relative import of one of our packages."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # "from pkg import mod" imports pkg.mod when it is a module of ours.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                known = (root / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    root / sub.replace(".", "/") / "__init__.py"
                ).exists()
                yield node.lineno, sub if known else target


def _sources(root: Path) -> Iterator[Path]:
    for package in PACKAGES:
        base = root / package
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*.py") if "/." not in str(p))


def graph(root: Path) -> dict[str, list[tuple[str, int, str]]]:
    """module -> [(imported module, line, path)] over every source file of our packages."""
    edges: dict[str, list[tuple[str, int, str]]] = {}
    for path in _sources(root):
        importer = _module_name(root, path)
        out = edges.setdefault(importer, [])
        for line, imported in imports_of(root, path):
            if imported.split(".")[0] in PACKAGES and imported != importer:
                out.append((imported, line, str(path.relative_to(root))))
    return edges


def check(root: Path) -> list[Violation]:
    """Every import that points sideways or upwards between rooms."""
    found: list[Violation] = []
    for importer, targets in graph(root).items():
        src = room_of(importer)
        for imported, line, path in targets:
            dst = room_of(imported)
            if src is None or dst is None or src[1] == dst[1]:
                continue
            if dst[0] > src[0]:
                why = f"layer {src[1]} must not import the higher layer {dst[1]}"
            elif dst[0] == src[0]:
                why = f"{src[1]} and {dst[1]} are peers of one layer"
            else:
                continue
            found.append(Violation(path, line, importer, imported, why))
    return found


def cycles(root: Path) -> list[list[str]]:
    """Import cycles between modules (strongly connected components of two or more)."""
    edges = {m: sorted({t for t, _, _ in ts}) for m, ts in graph(root).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the tree is small, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in edges:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    root = Path(argv[0] if argv else ".").resolve()
    bad = check(root)
    loops = cycles(root)
    for violation in bad:
        print(violation)
    for loop in loops:
        print("cycle:", " <-> ".join(loop))
    print(f"{len(bad)} upward or sideways imports, {len(loops)} cycles")
    return 1 if bad or loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
