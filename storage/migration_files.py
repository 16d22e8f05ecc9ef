"""The migration files on disk: which files make a version, and the SQL each flavour runs.

A version ``NNNN`` is made of these files in ``storage/migrations/``:

* ``NNNN_name.sql`` - what both flavours run: a table's columns are written here, once;
* ``NNNN_name.plain.sql`` / ``NNNN_name.timescale.sql`` - what one flavour adds (indexes,
  hypertables, compression), run after the shared file in the same transaction. Either may be
  absent when there is a shared file; without one, both are required;
* ``NNNN_name.<part>.part.sql`` - a fragment that the version's files include as ``{{part}}``
  (the aggregates' select list, written once for the summary function and the views); its
  leading comment lines describe it and are left out.

``{{name}}`` is a part of the same version or a flavour hook (``HOOKS``): the few words in
which the flavours differ inside one statement, such as ``{{partitioned_by_ts}}`` after a
time-series table (plain: ``PARTITION BY RANGE (ts)``; TimescaleDB: nothing, its
``create_hypertable`` follows in the flavour file). A placeholder alone on its line indents
every line of its text like that line, so a part reads unindented in its file and lands where
it belongs. An unknown placeholder is refused here, never sent to the server.

A migration's checksum is that of the SQL its flavour runs (files joined, placeholders
filled), so editing a part or a shared file shows as a change of every version using it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from storage.errors import MigrationError
from storage.params import SchemaMode

__all__ = ["HOOKS", "MIGRATIONS_DIR", "SUPERSEDED", "Migration", "discover"]

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
CONCRETE: Final = (SchemaMode.PLAIN, SchemaMode.TIMESCALE)

HOOKS: Final[dict[str, dict[SchemaMode, str]]] = {
    "partitioned_by_ts": {SchemaMode.PLAIN: "PARTITION BY RANGE (ts)", SchemaMode.TIMESCALE: ""},
}

# Checksums of versions as they were applied before their flavours shared one column list
# (each flavour's file written out in full). The SQL was rewritten, the schema it builds is the
# same (compared object by object when it changed), so a database that recorded one of these
# is current: migrate accepts it without the "changed after it was applied" warning.
SUPERSEDED: Final[dict[tuple[int, SchemaMode], frozenset[str]]] = {
    (2, SchemaMode.PLAIN): frozenset(
        {"e91a0474e9ed08629767e61cc99ffb4fb669bd83c5ba754f1cbd7f73ba659eda"}
    ),
    (2, SchemaMode.TIMESCALE): frozenset(
        {"9b87f628065d24d2099256cada04427a65c5e5b8126dd726de5e42334b844a45"}
    ),
    (3, SchemaMode.PLAIN): frozenset(
        {"dd499e0f7a16c26b4ab15fbb3533c6f252b1b7e9bdf4a75acaaaa3c70e67ab77"}
    ),
    (3, SchemaMode.TIMESCALE): frozenset(
        {"7e49e0e9aa44029afd20ab05b6e2b3b4c2f031add4f7797648e68512f9936026"}
    ),
}

_FILE = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)"
    r"(?:\.(?P<mode>plain|timescale)|\.(?P<part>[a-z0-9_]+)\.part)?\.sql$"
)
_PLACEHOLDER = re.compile(
    r"^(?P<indent>[ \t]*)\{\{(?P<name>\w+)\}\}[ \t]*$|\{\{(?P<inline>\w+)\}\}", re.M
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One version as one flavour runs it."""

    version: int
    name: str  # "0002_timeseries"
    path: Path  # the file named in errors: the flavour's own file, else the shared one
    sql: str  # what runs: shared file + flavour file, placeholders filled
    checksum: str  # sha256 of ``sql``, to notice an applied migration edited afterwards
    superseded: frozenset[str] = frozenset()  # earlier checksums of the same schema

    def matches(self, recorded: str) -> bool:
        """Whether a recorded checksum is this migration's (now or before a rewrite)."""
        return recorded == self.checksum or recorded in self.superseded


@dataclass(slots=True)
class _Version:
    name: str
    shared: Path | None = None
    flavours: dict[SchemaMode, Path] | None = None
    parts: dict[str, Path] | None = None


def _fill(sql: str, values: dict[str, str], where: str) -> str:
    def replace(m: re.Match[str]) -> str:
        key = m["name"] or m["inline"]
        if key not in values:
            raise MigrationError(
                f"{where}: unknown placeholder {{{{{key}}}}}; known: {', '.join(sorted(values))}"
            )
        text = values[key].rstrip("\n")
        if m["name"] is None:
            return text
        return "\n".join(m["indent"] + line if line else line for line in text.split("\n"))

    return _PLACEHOLDER.sub(replace, sql)


def _part(path: Path) -> str:
    """A part's text without its leading comment lines (its description, not its SQL)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    return "\n".join(lines)


def _scan(directory: Path) -> dict[int, _Version]:
    found: dict[int, _Version] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if m is None:
            raise MigrationError(
                f"{path.name}: not NNNN_name.sql, NNNN_name.<plain|timescale>.sql or "
                "NNNN_name.<part>.part.sql"
            )
        version = int(m["version"])
        entry = found.setdefault(version, _Version(m["name"]))
        if entry.name != m["name"]:
            raise MigrationError(f"version {version:04d} has two names: {entry.name}, {m['name']}")
        if m["part"]:
            entry.parts = {**(entry.parts or {}), m["part"]: path}
        elif m["mode"]:
            entry.flavours = {**(entry.flavours or {}), SchemaMode(m["mode"]): path}
        else:
            entry.shared = path
    return found


def discover(directory: Path = MIGRATIONS_DIR) -> dict[int, dict[SchemaMode, Migration]]:
    """Every version in ``directory`` -> what each concrete mode runs for it.

    Raises ``MigrationError`` on a malformed name, a version with files of different names, a
    version without a shared file missing one of its two flavours, or an unknown placeholder.
    """
    out: dict[int, dict[SchemaMode, Migration]] = {}
    for version, v in sorted(_scan(directory).items()):
        flavours = v.flavours or {}
        if v.shared is None and set(flavours) != set(CONCRETE):
            raise MigrationError(
                f"version {version:04d} needs a shared NNNN_name.sql or both .plain.sql and "
                ".timescale.sql"
            )
        parts = {k: _part(p) for k, p in (v.parts or {}).items()}
        name = f"{version:04d}_{v.name}"
        out[version] = {}
        for mode in CONCRETE:
            files = [p for p in (v.shared, flavours.get(mode)) if p is not None]
            values = {**parts, **{k: hook[mode] for k, hook in HOOKS.items()}}
            texts = [_fill(p.read_text(encoding="utf-8"), values, p.name) for p in files]
            sql = "\n".join(texts)
            out[version][mode] = Migration(
                version=version,
                name=name,
                path=files[-1],
                sql=sql,
                checksum=hashlib.sha256(sql.encode()).hexdigest(),
                superseded=SUPERSEDED.get((version, mode), frozenset()),
            )
    return out
